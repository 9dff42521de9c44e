"""Evaluation: openrecipe's local lm-eval task suite and the ``evaluate`` stage that runs it."""
