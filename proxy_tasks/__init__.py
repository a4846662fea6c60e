"""Proxy-task tools: model selection, variance, proxy search (issue 7)."""
