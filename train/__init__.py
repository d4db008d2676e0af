"""Training, evaluation and feature extraction for LoCo (needs the `train` extra: torch)."""

from loco_stream.extras import require_extra

require_extra("torch", "train", "loco-train")  # one line naming the extra, not a traceback
