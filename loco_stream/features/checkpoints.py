"""Loading a pretrained network's state dict from a file, with one clear error for a bad file.

A missing file, a truncated or damaged one, and a checkpoint of another architecture (keys or
shapes that differ from the network's) each raise `CheckpointError` with one line naming the file,
what is wrong, and what to do.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into its network; the message says why."""


def _summary(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def load_state_dict(path: str | Path, network: nn.Module, what: str, hint: str) -> None:
    """Load ``path`` (a plain state dict, ``weights_only``) into ``network`` strictly.

    ``what`` names the expected checkpoint (``"VGGish"``), ``hint`` says how to get a good one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint {path} does not exist; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable {what} checkpoint (truncated or damaged: {reason}); {hint}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors; {hint}")
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{len(missing)} missing key(s): {_summary(missing)}" if missing else "",
            f"{len(unexpected)} unexpected key(s): {_summary(unexpected)}" if unexpected else "",
            f"{len(wrong)} shape mismatch(es): {_summary(wrong)}" if wrong else "",
        ]
        raise CheckpointError(
            f"{path} does not hold {what} weights ({'; '.join(p for p in problems if p)}); {hint}"
        )
    network.load_state_dict(state)
