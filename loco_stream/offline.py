"""Offline detection: whole clips, one at a time, over worker processes, or on Ray actors.

With a step graph (models without absolute positions), a clip runs through it from its first
step to its last (`detect_steps`): every point gets what one run of the network over the whole
clip gives it, the numbers the stream sees too, with no window edge, in memory bounded by the
step graph's state and the points kept. Without one, a clip of L steps runs as one padded window
when L <= T, else as windows of T steps every T/2 steps, the last one ending at the clip's end,
so every step is seen with context on both sides and memory stays bounded by one window (a batch
of windows with batched graphs); candidates of all windows go through one soft-NMS. A model
directory with graphs with a batch axis runs ``STEP_BATCH`` steps and up to ``MAX_BATCH``
windows per call (`ModelSpec.batched`).

`detect_files` runs many clips over ``workers`` processes, each with its own model, at most one
clip per process in flight. A clip that fails (unreadable, no audio, too short, any error) comes
back as a failed `ClipResult` and the others go on. A worker process that dies (a crash in a
decoder, the kernel's out-of-memory killer) breaks only the clips it might have held: those in
flight at that moment are run again one at a time, so a clip is blamed only when it kills a
process running nothing else. `detect_files_on_ray` does the same on a Ray cluster's actors.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BATCH_GRAPHS, WindowInfo, read_card, resolve_dir
from .config import DecodeConfig
from .features.media import MediaError, extract_file, file_steps
from .features.steps import Step, StepSpec
from .messages import plain_messages
from .model_dir import ModelDir
from .postprocess import Segments, candidates, soft_nms, steps_to_seconds
from .runtime import Backend
from .stream.batched import MAX_BATCH, ORT_BACKENDS, BatchedModel
from .stream.step_runner import StepRunner

# (visual (1,T,Dv), audio (1,T,Da), mask (1,T)) -> (scores (1,N,C), segments (1,N,2|C,2)) in steps
WindowRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# steps -> (visual (S, Dv), audio (S, Da)): one call for many steps
StepBatchRunner = Callable[[list[Step]], tuple[np.ndarray, np.ndarray]]
STEP_BATCH = 32  # steps per extractor call with batched graphs (about 3.5 MB of frames)


def window_starts(length: int, window: int) -> list[int]:
    """First step of each window covering ``length`` steps with half-window hops."""
    if length <= window:
        return [0]
    hop = window // 2
    starts = list(range(0, length - window, hop))
    return starts + [length - window]


def detect_features(
    run_window: WindowRunner,
    visual: np.ndarray,
    audio: np.ndarray,
    window: int,
    positions: np.ndarray,
    decode: DecodeConfig,
    batch: int = 1,
) -> Segments:
    """visual (L, Dv) and audio (L, Da) of one clip -> final segments in clip steps; positions
    (N,): the step of each of a window's points (`WindowInfo.point_positions`).
    ``batch`` > 1: ``run_window`` takes up to that many windows (B,T,...) in one call."""
    length = min(len(visual), len(audio))
    starts = window_starts(length, window)
    parts = []
    for first in range(0, len(starts), batch):
        chunk = starts[first : first + batch]
        visual_windows = np.zeros((len(chunk), window, visual.shape[1]), dtype=np.float32)
        audio_windows = np.zeros((len(chunk), window, audio.shape[1]), dtype=np.float32)
        mask = np.zeros((len(chunk), window), dtype=np.float32)
        for row, start in enumerate(chunk):
            stop = min(start + window, length)
            visual_windows[row, : stop - start] = visual[start:stop]
            audio_windows[row, : stop - start] = audio[start:stop]
            mask[row, : stop - start] = 1.0
        scores, segments = run_window(visual_windows, audio_windows, mask)  # (B,N,C), (B,N,2)
        for row, start in enumerate(chunk):
            found = candidates(scores[row], segments[row], positions, decode)
            parts.append(found.shift(start))
    merged = Segments.concat(parts)
    return soft_nms(merged, decode.nms_sigma, decode.score_threshold, decode.max_segments)


def detect_steps(
    step_graph: Backend,
    info: WindowInfo,
    visual: np.ndarray,
    audio: np.ndarray,
    decode: DecodeConfig,
) -> Segments:
    """visual (L, Dv) and audio (L, Da) of one clip through the step graph -> final segments in
    clip steps (every point of the clip decoded at once, as from a whole-clip run)."""
    length = min(len(visual), len(audio))
    runner = StepRunner(step_graph, info, keep=length)
    runner.push(visual[:length], audio[:length])
    scores, segments, positions = runner.window_outputs(0)  # (N, C), (N, 2), (N,)
    found = candidates(scores, segments, positions, decode)
    return soft_nms(found, decode.nms_sigma, decode.score_threshold, decode.max_segments)


def extract_file_batched(
    path: str | Path, spec: StepSpec, features: StepBatchRunner, batch: int = STEP_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """`extract_file` with ``batch`` steps per call of ``features``: visual (L, Dv), audio
    (L, Da)."""
    visual, audio, steps = [], [], []
    for step in file_steps(path, spec):
        steps.append(step)
        if len(steps) == batch:
            v, a = features(steps)  # (S, Dv), (S, Da)
            visual.append(v)
            audio.append(a)
            steps = []
    if steps:
        v, a = features(steps)
        visual.append(v)
        audio.append(a)
    if not visual:
        raise MediaError(
            f"{path} is shorter than one step ({spec.step_seconds} s of both video and audio)"
        )
    return np.concatenate(visual).astype(np.float32), np.concatenate(audio).astype(np.float32)


def detect_clip(
    model: ModelDir | BatchedModel, path: Path, max_events: int | None = None
) -> tuple[list[dict], float]:
    """UnAV result entries of one clip (at most ``max_events``, default the model's cap), and its
    duration in seconds (complete steps). A `BatchedModel` with batched graphs extracts
    ``STEP_BATCH`` steps per call and runs up to ``MAX_BATCH`` windows per call."""
    if isinstance(model, BatchedModel) and model.batched:
        visual, audio = extract_file_batched(path, model.spec, model.features)  # (L, Dv), (L, Da)
        run_window, batch = model.windows, MAX_BATCH
    else:
        visual, audio = extract_file(path, model.spec, model.step_features)  # (L, Dv), (L, Da)
        run_window, batch = model.run_window, 1
    info = model.info
    decode = info.decode
    if max_events is not None:
        decode = dataclasses.replace(decode, max_segments=max_events)
    step_graph = model.offline_step_graph()
    if step_graph is not None:
        found = detect_steps(step_graph, info, visual, audio, decode)
    else:
        positions = info.point_positions
        found = detect_features(run_window, visual, audio, info.window, positions, decode, batch)
    duration = len(visual) * info.step_seconds
    found = steps_to_seconds(found, info.step_seconds, info.step_offset, duration)
    return [
        {
            "segment": [round(float(s), 3), round(float(e), 3)],
            "label": info.classes[int(k)],
            "label_id": int(k),
            "score": round(float(p), 5),
            "peak": round(float(q), 3),
        }
        for s, e, k, p, q in zip(
            found.start, found.end, found.label, found.score, found.peak, strict=True
        )
    ], duration


@dataclass
class ClipResult:
    """One clip's events (``error`` None) or why it has none (``entries`` empty)."""

    path: Path
    entries: list[dict]
    duration: float  # seconds of complete steps; 0 when failed
    error: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """How each worker opens its model: a model directory (None: the default), backend, threads,
    and whether to run its graphs with a batch axis when it has them (``batched``)."""

    path: str | None = None
    backend: str = "onnxruntime"
    threads: int = 1
    batched: bool = True

    def open(self) -> ModelDir | BatchedModel:
        """The model: a `BatchedModel` when batching is wanted, the backend is ONNX Runtime's and
        the directory has graphs with a batch axis (``python -m export --batch``), else a
        `ModelDir` (batch-1 graphs, a call per step and per window)."""
        if self.batched and self.backend in ORT_BACKENDS:
            card = read_card(resolve_dir(self.path))
            if set(BATCH_GRAPHS.values()) <= set(card.files):
                return BatchedModel(self.path, self.backend, self.threads)
        return ModelDir(self.path, self.backend, self.threads)


def detect_clip_result(
    model: ModelDir | BatchedModel, path: Path, max_events: int | None
) -> ClipResult:
    """`detect_clip` with its failure as a result: a `MediaError`'s message, or any other error
    with its type (a clip never stops the others)."""
    try:
        entries, duration = detect_clip(model, path, max_events)
    except MediaError as error:
        return ClipResult(path, [], 0.0, str(error))
    except Exception as error:  # noqa: BLE001 - one clip's bug is reported, the batch goes on
        return ClipResult(path, [], 0.0, f"unexpected {type(error).__name__}: {error}")
    return ClipResult(path, entries, duration)


def default_threads(workers: int) -> int:
    """Threads per graph for each of ``workers`` processes: 2 for one, else the cores shared out."""
    if workers == 1:
        return 2
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


_worker_model: ModelDir | BatchedModel | None = None  # the model of this worker process


def _open_worker_model(spec: ModelSpec) -> None:
    """A worker's set-up. Ctrl-C is the parent's to handle (it cancels what is queued and keeps
    what is done): a worker that took it too would die with a traceback, mid-clip or mid-load."""
    global _worker_model
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    plain_messages("loco-detect")  # a clip's warnings as the parent's: one line each
    _worker_model = spec.open()


def _detect_in_worker(path: Path, max_events: int | None) -> ClipResult:
    assert _worker_model is not None, "worker started without its model"
    return detect_clip_result(_worker_model, path, max_events)


def detect_files(
    paths: Iterable[Path],
    model: ModelDir | BatchedModel | ModelSpec,
    max_events: int | None = None,
    workers: int = 1,
) -> Iterator[ClipResult]:
    """Detect every clip of ``paths``; results come in the order clips finish. ``workers`` 1 runs
    them here on ``model`` (a `ModelDir`, or a `ModelSpec` to open); more run them in that many
    processes, each opening ``model`` (then a `ModelSpec`)."""
    paths = list(paths)
    workers = max(1, min(workers, len(paths)))  # no process without a clip to run
    if workers > 1:
        if not isinstance(model, ModelSpec):
            raise TypeError("workers > 1 open their own models: pass a ModelSpec")
        for path, outcome in map_in_processes(
            _detect_in_worker, paths, workers, _open_worker_model, (model,), (max_events,)
        ):
            yield (
                ClipResult(path, [], 0.0, str(outcome))
                if isinstance(outcome, WorkerDied)
                else outcome
            )
        return
    opened = model.open() if isinstance(model, ModelSpec) else model
    try:
        for path in paths:
            yield detect_clip_result(opened, path, max_events)
    finally:
        if opened is not model:
            opened.close()


class WorkerDied(str):
    """Why an item has no result: the process running it alone died."""


WORKER_DIED = WorkerDied(
    "the worker process died while running it alone (a crash in decoding, or killed, e.g. out "
    "of memory)"
)


def map_in_processes(
    work: Callable[..., Any],
    items: Iterable[Any],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    extra_args: tuple = (),
) -> Iterator[tuple[Any, Any]]:
    """``(item, work(item, *extra_args))`` for each item, run in ``workers`` spawned processes
    (each set up once by ``initializer(*initargs)``), in the order they finish. At most one item
    per process is in flight, so when a process dies only those in flight are suspects: each is
    run again alone, and one whose lone run dies too yields `WORKER_DIED` instead of a result.
    ``work`` must catch its own errors (an exception it raises is raised here)."""
    queue = deque(items)
    suspects: deque = deque()  # in flight when a process died: each gets a run alone
    context = multiprocessing.get_context("spawn")  # no fork of a process holding ORT threads
    pools: list[ProcessPoolExecutor] = []  # the live pool, if any

    def pool() -> ProcessPoolExecutor:
        if not pools:
            pools.append(ProcessPoolExecutor(workers, context, initializer, initargs))
        return pools[0]

    def drop_pool() -> None:
        pools.pop().shutdown(wait=True, cancel_futures=True)

    def submit(item: Any) -> Future:
        """Submit to the live pool, or to a fresh one when it broke with nothing in flight."""
        try:
            return pool().submit(work, item, *extra_args)
        except BrokenProcessPool:
            drop_pool()
            return pool().submit(work, item, *extra_args)

    try:
        while queue or suspects:
            alone = bool(suspects)
            source = suspects if alone else queue
            in_flight: dict[Future, Any] = {}
            while source and len(in_flight) < (1 if alone else workers):
                item = source.popleft()
                in_flight[submit(item)] = item
            broken = False
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    item = in_flight.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        broken = True
                        if alone:
                            yield item, WORKER_DIED
                        else:
                            suspects.append(item)
                        continue
                    yield item, future.result()
                    if not (alone or broken) and queue:
                        try:
                            next_item = queue[0]
                            in_flight[pool().submit(work, next_item, *extra_args)] = next_item
                            queue.popleft()
                        except BrokenProcessPool:  # found broken; the item never started
                            broken = True
            if broken:
                drop_pool()
    finally:
        if pools:
            drop_pool()


class _RayClipDetector:
    """A Ray actor's body: one model, one clip at a time."""

    def __init__(self, spec: ModelSpec) -> None:
        self.model = spec.open()

    def detect(self, path: Path, max_events: int | None) -> ClipResult:
        return detect_clip_result(self.model, path, max_events)


def detect_files_on_ray(
    paths: Iterable[Path],
    model: ModelSpec,
    max_events: int | None = None,
    actors: int | None = None,
    address: str = "auto",
) -> Iterator[ClipResult]:
    """`detect_files` on a Ray cluster (``address`` as `ray_cluster.connect`, reached before this
    returns): one actor per node sized by its CPUs (``model.threads`` ignored), or ``actors``
    spread over the nodes; each runs one clip at a time, so a clip whose actor dies is known: it
    is run once more on a new actor, and reported (`WORKER_DIED`) when that one dies too. Paths
    and the model directory must be readable at the same place on every node."""
    from .stream.ray_cluster import connect, plan_placements

    ray = connect(address)
    paths = list(paths)
    placements = plan_placements(ray.nodes(), len(paths), actors)
    return _ray_outcomes(ray, paths, model, max_events, [p.cpus for p in placements])


def _ray_outcomes(
    ray: Any,
    paths: list[Path],
    model: ModelSpec,
    max_events: int | None,
    cpus: list[float],
    detector: type = _RayClipDetector,
) -> Iterator[ClipResult]:
    """The clips' results from one ``detector`` actor per entry of ``cpus`` (its CPUs), as they
    finish."""
    given = {path.resolve(): path for path in paths}  # actors get absolute paths
    queue = deque(given)
    deaths: dict[Path, int] = {}

    def new_actor(cpus: float) -> Any:
        options = {"num_cpus": cpus, "max_restarts": 0}
        spec = dataclasses.replace(model, threads=max(1, int(cpus)))
        return ray.remote(detector).options(**options).remote(spec)

    idle = [(new_actor(c), c) for c in cpus]
    running: dict[Any, tuple[Any, float, Path]] = {}  # ObjectRef -> (actor, cpus, path)
    try:
        while queue or running:
            while queue and idle:
                actor, share = idle.pop()
                path = queue.popleft()
                running[actor.detect.remote(path, max_events)] = (actor, share, path)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, share, path = running.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayActorError:  # the actor died running this one clip
                ray.kill(actor)
                idle.append((new_actor(share), share))
                deaths[path] = deaths.get(path, 0) + 1
                if deaths[path] == 1:
                    queue.appendleft(path)
                else:
                    yield ClipResult(given[path], [], 0.0, str(WORKER_DIED))
                continue
            idle.append((actor, share))
            yield dataclasses.replace(result, path=given[path])
    finally:
        for actor, _ in idle:
            ray.kill(actor)
        for actor, _, _ in running.values():
            ray.kill(actor)
