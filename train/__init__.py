"""Training, evaluation and feature extraction for LoCo (needs the `train` extra: torch)."""
