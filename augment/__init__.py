"""Augmentation ops and policies for detection and segmentation (issue 4)."""
