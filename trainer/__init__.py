"""nas-garden trainer: trials on TF Model Garden, and the search controller.

Importing the package is cheap; TensorFlow loads only with the modules that
build or train models.
"""
