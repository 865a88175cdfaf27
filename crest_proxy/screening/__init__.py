"""Screening: the guard, segmentation, language, hold-back for streams, and the one decision path."""
