"""What every inference backend offers: named inputs of fixed shape in, named outputs out.

A backend runs one exported graph (the LoCo window graph or a feature extractor) on one device.
Inputs are checked against the graph's specs before they reach the engine, so a wrong shape or
dtype fails with the input's name and the expected shape instead of an engine error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np

from .. import bundle


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message says what is missing."""


class UnknownBackendError(ValueError):
    """A backend name that is not one of ``BACKENDS``."""


class GraphLoadError(ValueError):
    """A graph file the backend could not load (damaged, not a graph, unsupported)."""


class InputError(ValueError):
    """Inputs given to ``Backend.run`` that do not match the graph's inputs."""


class TensorSpec(NamedTuple):
    """Shape and dtype of a graph input; ``None`` marks a dimension the graph leaves free."""

    shape: tuple[int | None, ...]
    dtype: np.dtype


def parse_metadata(text: str | None, source: str) -> dict[str, Any]:
    """The ``loco_stream`` metadata from its JSON text; ``{}`` for a graph without any
    (a user-supplied extractor, for instance)."""
    try:
        return bundle.parse_metadata(text)
    except ValueError as error:
        raise GraphLoadError(f"{source}: {error}") from None


def format_shape(shape: tuple[int | None, ...]) -> str:
    """``(1, 'T', 64)``-style text with ``?`` for free dimensions."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class Backend(ABC):
    """One graph, loaded on one device, ready to run.

    Subclasses set the attributes in ``__init__`` and implement ``_run`` and ``close``.
    """

    name: str  # backend kind, as given to ``open_backend``
    device: str  # human-readable, e.g. "CPU (onnxruntime 1.20.1, 2 threads)"
    input_specs: dict[str, TensorSpec]
    output_names: list[str]
    metadata: dict[str, Any]  # the parsed ``loco_stream`` JSON of the graph

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph once; every input is required, with exactly its shape and dtype."""
        self.check_inputs(inputs)
        return self._run(inputs)

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Raise ``InputError`` naming the first input that is missing, unknown or mis-shaped."""
        missing = [name for name in self.input_specs if name not in inputs]
        unknown = [name for name in inputs if name not in self.input_specs]
        if missing or unknown:
            raise InputError(
                f"{self.name}: inputs must be exactly {sorted(self.input_specs)}; "
                f"missing {missing}, unknown {unknown}"
            )
        for name, spec in self.input_specs.items():
            array = inputs[name]
            expected = f"expected {format_shape(spec.shape)} {np.dtype(spec.dtype).name}"
            if not isinstance(array, np.ndarray):
                raise InputError(f"input '{name}' is a {type(array).__name__}, {expected} array")
            pairs = zip(spec.shape, array.shape, strict=False)
            shape_ok = array.ndim == len(spec.shape) and all(w in (None, g) for w, g in pairs)
            if not shape_ok:
                raise InputError(f"input '{name}' has shape {array.shape}, {expected}")
            if array.dtype != spec.dtype:
                raise InputError(f"input '{name}' has dtype {array.dtype}, {expected}")

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run checked inputs through the engine."""

    @abstractmethod
    def close(self) -> None:
        """Release the session or engine and its device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.device}>"
