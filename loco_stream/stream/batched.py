"""A model directory's graphs run for many streams at once: one call per batch of steps or windows.

``python -m export --batch`` writes the three graphs with a free batch axis (``*_batch.onnx``,
``bundle.BATCH_GRAPHS``); `BatchedModel` runs those when the directory has them and the backend is
ONNX Runtime. Otherwise it runs the batch-1 graphs once per row and says so once (a warning): on
the CPU that costs little (ONNX Runtime's per-call overhead is a few tens of microseconds), on a
GPU it leaves the device mostly idle. On the CPU backend a batch is cut into ``threads`` chunks
run at once, each a call on one ONNX Runtime thread. A graph whose batch axis is fixed (B > 1)
gets batches padded to B. The rows of a batch do not interact: a stream's outputs never depend
on the streams batched with it.

It also offers the single-stream interface of `ModelDir` (``info``, ``spec``, ``step_features``,
``run_window``) through the same graphs, so a stream handled alone (a restart, the end of a
stream) computes exactly what it computes in a batch.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..bundle import BATCH_GRAPHS, REEXPORT, DamagedFileError, read_bundle
from ..features.steps import Step
from ..model_dir import ModelDir
from ..runtime import Backend, GraphLoadError, open_backend

log = logging.getLogger(__name__)

ORT_BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt")
MAX_BATCH = 64  # rows per call of a graph with a free batch axis


def _batch_size(graph: Backend) -> int | None:
    """The graph's fixed batch size, or None when its batch axis is free."""
    return next(iter(graph.input_specs.values())).shape[0]


def run_rows(
    graph: Backend,
    inputs: dict[str, np.ndarray],
    pool: ThreadPoolExecutor | None = None,
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """Run ``inputs`` (B, ...) through ``graph`` in as few calls as its batch axis allows: chunks of
    ``MAX_BATCH`` when it is free, padded chunks of its size when it is fixed. With a ``pool`` of
    ``workers`` threads a free batch is cut into that many chunks, run at once."""
    rows = len(next(iter(inputs.values())))
    fixed = _batch_size(graph)
    size = fixed or min(MAX_BATCH, -(-rows // workers))

    def run_chunk(begin: int) -> dict[str, np.ndarray]:
        chunk = {name: array[begin : begin + size] for name, array in inputs.items()}
        taken = len(next(iter(chunk.values())))
        if fixed is not None and taken < size:  # pad with copies of the first row
            chunk = {
                name: np.concatenate([array, np.repeat(array[:1], size - taken, axis=0)])
                for name, array in chunk.items()
            }
        return {name: array[:taken] for name, array in graph.run(chunk).items()}

    begins = range(0, rows, size)
    if pool is not None and len(begins) > 1:
        parts = list(pool.map(run_chunk, begins))
    else:
        parts = [run_chunk(begin) for begin in begins]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class BatchedModel:
    """Step features and windows of many streams, each kind in one call (per ``MAX_BATCH``).

    ``model`` is an open `ModelDir` (kept open; the caller closes it) or a path (opened here on
    ``backend`` with ``threads``, closed by ``close``). ``batched`` False runs the batch-1 graphs
    row by row even when the directory has batched ones.
    """

    def __init__(
        self,
        model: str | Path | ModelDir | None = None,
        backend: str = "onnxruntime",
        threads: int = 2,
        batched: bool = True,
    ) -> None:
        self._owns_model = not isinstance(model, ModelDir)
        self.model = ModelDir(model, backend, threads) if self._owns_model else model
        self.info = self.model.info
        self.spec = self.model.spec
        self.step_graph = self.model.step_graph  # run per stream: it holds a stream's state
        self.offline_step_graph = self.model.offline_step_graph
        self._graphs: dict[str, Backend] = {}
        self._pool: ThreadPoolExecutor | None = None
        backend = self.model.window_graph.name
        # on the CPU a batch runs as `threads` chunks at once, each on one thread: convolutions
        # and small matrices scale better over rows than over one call's intra-op threads
        self._workers = threads if backend == "onnxruntime" else 1
        try:
            if batched:
                self._graphs = self._open_batched(backend, 1 if self._workers > 1 else threads)
        except Exception:
            self.close()
            raise
        self.batched = bool(self._graphs)
        if self.batched and self._workers > 1:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="loco-batch")

    def _open_batched(self, backend: str, threads: int) -> dict[str, Backend]:
        """The batched graphs of the directory on ``backend``, verified; {} with a warning when
        there are none for it."""
        names = list(BATCH_GRAPHS.values())
        missing = [name for name in names if name not in self.model.card.files]
        if backend not in ORT_BACKENDS or missing:
            reason = (
                f"the {backend} backend runs batch-1 graphs only"
                if backend not in ORT_BACKENDS
                else f"{self.model.path} has no graphs with a batch axis ({', '.join(missing)}); "
                "`python -m export --batch` writes them"
            )
            log.warning(
                "%s: the streams' steps and windows run one call per stream (on the CPU this "
                "costs little; on a GPU it leaves the device mostly idle)",
                reason,
            )
            return {}
        read_bundle(self.model.path, names)
        graphs: dict[str, Backend] = {}
        try:
            for role, name in BATCH_GRAPHS.items():
                path = self.model.path / name
                try:
                    graphs[role] = open_backend(backend, path, threads)
                except GraphLoadError as error:
                    raise DamagedFileError(
                        path, f"cannot be loaded ({error}); {REEXPORT}"
                    ) from None
        except Exception:
            for graph in graphs.values():
                graph.close()
            raise
        return graphs

    @property
    def description(self) -> str:
        how = "batched graphs" if self.batched else "batch-1 graphs, a call per stream"
        return f"{self.model.description}, {how}"

    def features(self, steps: list[Step]) -> tuple[np.ndarray, np.ndarray]:
        """The steps' visual (S, Dv) and audio (S, Da) features (steps of any streams)."""
        if not self.batched:
            pairs = [self.model.step_features(step) for step in steps]
            return np.stack([v for v, _ in pairs]), np.stack([a for _, a in pairs])
        frames = np.stack([step.frames for step in steps])  # (S, F, H, W, 3) uint8
        audio = np.stack([step.audio for step in steps])  # (S, samples) float32
        visual = self._run("visual", {"frames": frames})["features"]
        return visual, self._run("audio", {"waveform": audio})["features"]

    def windows(
        self, visual: np.ndarray, audio: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(W,T,Dv), (W,T,Da), (W,T) -> scores (W,N,C), segments (W,N,2) in window steps."""
        if not self.batched:
            outs = [
                self.model.run_window(visual[i : i + 1], audio[i : i + 1], mask[i : i + 1])
                for i in range(len(visual))
            ]
            return np.concatenate([s for s, _ in outs]), np.concatenate([g for _, g in outs])
        out = self._run("window", {"visual": visual, "audio": audio, "mask": mask})
        return out["scores"], out["segments"]

    def _run(self, role: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_rows(self._graphs[role], inputs, self._pool, self._workers)

    def step_features(self, step: Step) -> tuple[np.ndarray, np.ndarray]:
        """One step's (visual (Dv,), audio (Da,)) features, by the same graphs as ``features``."""
        visual, audio = self.features([step])
        return visual[0], audio[0]

    def run_window(
        self, visual: np.ndarray, audio: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One window (1,T,Dv), (1,T,Da), (1,T) -> scores (1,N,C), segments (1,N,2)."""
        return self.windows(visual, audio, mask)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for graph in self._graphs.values():
            graph.close()
        self._graphs = {}
        if self._owns_model:
            self.model.close()

    def __enter__(self) -> BatchedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
