"""Evaluation of the screening path on labelled data, and per-language threshold calibration (issue 17)."""
