"""Many streams over a Ray cluster: groups of streams on actors, one batched engine each.

    loco-stream --sources streams.yaml --output-dir DIR --ray auto|local|ADDRESS [--ray-actors N]

The driver (the ``loco-stream`` process) splits the streams into groups, one per actor, and starts
one actor per group (`StreamWorker`: a `MultiStreamEngine` on ``num_cpus`` threads, run in a
thread of the actor). By default there is one actor per node, sized by the node's CPUs (or one
GPU per actor for a CUDA or TensorRT backend); ``actors`` places that many, round robin over the
nodes, each node's CPUs shared among its actors. A group's size follows its actor's share of
CPUs. Every path (stream files, the model directory) must be readable at the same place on every
node (a shared folder), and live sources must be reachable from every node.

**Sinks: the driver writes.** Actors send their events to the driver, which alone calls
``on_event`` (the CLI writes the JSON-lines files there). Each event comes numbered: its index
among its stream's event records. The driver keeps, per stream, the number of event records it
has handed out and hands out an event only when its number is exactly that count, so what was
written is always the stream's records 0..n-1, each once, in order.

**An actor that dies** (killed, its process crashed, its node lost) is detected at the driver's
next poll (every ``POLL_SECONDS``) and replaced at once by a new actor for the streams of its
group that had not ended, each resumed with ``skip_records`` = the records handed out so far
and ``resume_at`` = the stream time of the last one (`lane.StreamSpec`): a file is read again
from its beginning, computes the same records (they depend neither on timing nor on batching)
and drops the ones already written; a paced file catches up unpaced to where its output ended.
With the numbering check above, nothing is repeated and nothing is lost (tested with
``ray.kill``). A live source cannot be replayed: it resumes at "now", its new events' ids follow
the written ones, and the events it had open (a start record without an end) stay unfinished,
as the report says. A group whose actors die ``MAX_RESTARTS`` times in a row without handing
out anything ends its streams with an error.

**The network.** ``local`` (and ``auto`` when this machine is in no cluster) starts a private
single-node cluster whose processes (GCS, raylet, object manager, workers) listen on 127.0.0.1
only, on random ports, with Ray's token authentication, no dashboard, usage statistics off.
Joining a cluster (``auto`` in one, or an ADDRESS) uses that cluster's own settings: Ray's
nodes talk to each other on the node's address, so keep such a cluster on a private network.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import StreamStats
from .lane import StreamEvent, StreamReport, StreamSpec
from .multi import MultiStreamEngine

POLL_SECONDS = 0.2  # how long a poll of an actor waits for output
MAX_RESTARTS = 3  # actor deaths in a row, without output between them, before a group gives up
HANG_SECONDS = 120.0  # an actor whose poll (or start, model loading included) takes longer is hung
STOP_GRACE_SECONDS = 15.0  # after a stop, how long actors may take to close their streams
GPU_BACKENDS = ("onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")
INSTALL_HINT = 'pip install "loco-stream[ray]"'
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached; the message says what to do."""


def import_ray() -> Any:
    """The ``ray`` module; `RayUnavailable` with the install command when it is missing."""
    try:
        import ray
    except ImportError as error:
        raise RayUnavailable(f"--ray needs Ray: {INSTALL_HINT} [{error}]") from None
    return ray


def connect(address: str = "auto", num_cpus: int | None = None) -> Any:
    """Connect to a Ray cluster (``auto``: this machine's if it is in one, else a private one;
    ``local``: a new private one; or an ADDRESS), or reuse the connection this process has;
    returns the ``ray`` module.

    A private cluster listens on 127.0.0.1 only: its node address is the loopback one
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray reads when imported, so it is set before;
    checked after the start), without dashboard and usage statistics."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "auto" and not _cluster_here():
        address = "local"
    if address == "local" and "ray" not in sys.modules:
        os.environ[LOOPBACK_ENV] = "0"
    ray = import_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True}
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address!r}: {_first_line(error)} (start one with "
            "`ray start --head`, or run a private one with --ray local)"
        ) from None
    if address == "local" and ray.util.get_node_ip_address() != "127.0.0.1":
        ray.shutdown()
        raise RayUnavailable(
            "a private Ray cluster would listen on this machine's network address: Ray was "
            f"imported before {LOOPBACK_ENV}=0 could be set; set it in the environment"
        )
    return ray


def _cluster_here() -> bool:
    """Whether this machine is in a Ray cluster (``RAY_ADDRESS``, or the file ``ray start``
    leaves in Ray's temporary folder)."""
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return bool(os.environ.get("RAY_ADDRESS")) or current.exists()


@dataclass(frozen=True)
class Placement:
    """Where one actor runs and what it asks for."""

    node_id: str | None
    cpus: float
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, math.floor(self.cpus))


def plan_placements(
    nodes: list[dict], streams: int, actors: int | None = None, gpus: bool = False
) -> list[Placement]:
    """The actors for ``streams`` streams on the alive ``nodes`` (``ray.nodes()`` entries): one
    per node by default, sized by its CPUs; ``actors`` round robin over the nodes, most CPUs
    first, sharing each node's CPUs. Never more actors than streams. ``gpus``: one GPU each."""
    alive = [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if gpus:
        alive = [n for n in alive if n["Resources"].get("GPU", 0) >= 1]
    if not alive:
        what = "a GPU and CPUs" if gpus else "CPUs"
        raise RayUnavailable(f"the Ray cluster has no alive node with {what}")
    alive.sort(key=lambda n: -n["Resources"]["CPU"])
    count = min(streams, actors if actors is not None else len(alive))
    chosen = [alive[i % len(alive)] for i in range(count)]
    placements = []
    for node in chosen:
        sharing = sum(other is node for other in chosen)
        cpus = node["Resources"]["CPU"] / sharing
        placements.append(Placement(node["NodeID"], cpus, 1.0 if gpus else 0.0))
    return placements


def split_streams(specs: list[StreamSpec], weights: list[float]) -> list[list[StreamSpec]]:
    """``specs`` in consecutive groups, one per weight, sizes proportional to the weights (largest
    remainders), every group at least one stream (there are no more weights than specs)."""
    total = sum(weights)
    exact = [len(specs) * w / total for w in weights]
    sizes = [max(1, math.floor(x)) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - sizes[i], reverse=True)
    for i in by_remainder:
        if sum(sizes) >= len(specs):
            break
        sizes[i] += 1
    while sum(sizes) > len(specs):  # the floor of 1 overshot: take from the largest
        sizes[sizes.index(max(sizes))] -= 1
    groups, begin = [], 0
    for size in sizes:
        groups.append(specs[begin : begin + size])
        begin += size
    return groups


class StreamWorker:
    """The actor's body: a `MultiStreamEngine` running a group of streams in a thread; the driver
    polls ``take`` for what happened since. Messages, in order:
    ``("start", name, description)``, ``("event", name, number, StreamEvent)`` (``number``: the
    event's index among its stream's event records, counting the skipped ones),
    ``("end", name, StreamReport)``, ``("failed", text)`` (the engine itself failed)."""

    def __init__(
        self, model: str | None, backend: str, threads: int, hop: int | None, batched: bool
    ) -> None:
        self.engine = MultiStreamEngine(model, backend, threads, hop, batched)
        self._messages: list[tuple] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._thread: threading.Thread | None = None

    def start(self, specs: list[StreamSpec]) -> None:
        """Run ``specs`` in the background."""
        numbers = {spec.name: spec.skip_records for spec in specs if not spec.live}
        numbers.update({spec.name: 0 for spec in specs if spec.live})

        def post(message: tuple) -> None:
            with self._changed:
                self._messages.append(message)
                self._changed.notify_all()

        def on_event(item: StreamEvent) -> None:
            post(("event", item.stream, numbers[item.stream], item))
            numbers[item.stream] += 1

        def run() -> None:
            try:
                self.engine.run(
                    specs,
                    on_event,
                    lambda report: post(("end", report.name, report)),
                    self._stop.is_set,
                    lambda name, description: post(("start", name, description)),
                )
            except Exception as error:  # reported to the driver, which ends the group's streams
                post(("failed", f"{type(error).__name__}: {error}"))
            finally:
                with self._changed:
                    self._done = True
                    self._changed.notify_all()

        self._thread = threading.Thread(target=run, name="loco-stream-worker", daemon=True)
        self._thread.start()

    def take(self, wait_seconds: float = POLL_SECONDS) -> tuple[list[tuple], bool]:
        """The messages since the last call (waiting up to ``wait_seconds`` for one), and whether
        the engine has finished (every stream ended)."""
        with self._changed:
            if not self._messages and not self._done:
                self._changed.wait(wait_seconds)
            messages, self._messages = self._messages, []
            return messages, self._done

    def stop(self) -> None:
        """Stop every stream (their open events are closed and sent)."""
        self._stop.set()


class StreamLedger:
    """What the driver has handed out of one stream, and so where a replacement resumes it.

    A file's events are numbered by the worker (their index among the stream's start and end
    records); ``accept`` lets through only the next number, so what was handed out is always
    records 0..n-1, once each, in order. A live stream cannot be replayed: its events pass as
    they come, their ids shifted after the ones handed out once it has been resumed.
    """

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.handed_out = 0  # event records
        self.last_time = 0.0  # emitted_at of the last one
        self.open_ids: set[int] = set()  # a start record handed out, no end yet
        self._next_id = 0  # one past the highest id handed out
        self._id_offset = 0  # added to a resumed live stream's ids

    def accept(self, number: int, item: StreamEvent) -> StreamEvent | None:
        """``item`` (renumbered for a resumed live stream) if it is to be handed out now; None
        for a file's record handed out before its worker died."""
        event = item.event
        if self.spec.live:
            if self._id_offset:
                event = dataclasses.replace(event, id=event.id + self._id_offset)
                item = StreamEvent(item.stream, event)
            self._next_id = max(self._next_id, event.id + 1)
        elif number != self.handed_out:
            if number > self.handed_out:  # cannot happen: the worker numbers every record
                raise RuntimeError(
                    f"stream '{self.spec.name}': record {number} arrived after "
                    f"{self.handed_out} were handed out; records in between are missing"
                )
            return None
        if event.type == "start":
            self.open_ids.add(event.id)
        else:
            self.open_ids.discard(event.id)
        self.handed_out += 1
        self.last_time = event.emitted_at
        return item

    def resumed_spec(self) -> StreamSpec:
        """The spec for a replacement worker: a file skips the records handed out and reads
        unpaced up to the last one's time; a live stream starts anew, its ids after ours and its
        open events left open (``open_ids`` still names them; cleared here)."""
        if self.spec.live:
            self._id_offset = self._next_id
            self.open_ids.clear()
            return self.spec
        return dataclasses.replace(
            self.spec, skip_records=self.handed_out, resume_at=self.last_time
        )


@dataclass
class Restart:
    """One replaced actor: which streams, how long until they were running again."""

    group: int
    streams: list[str]
    skipped: dict[str, int]  # records already written, per stream (dropped on replay)
    died_at: float  # time.monotonic() when the death was seen
    resumed_after: float | None = None  # s from then until the new actor's streams all started
    reason: str = ""


@dataclass
class _Group:
    """The streams of one actor, and what the driver knows of them."""

    index: int
    placement: Placement
    specs: list[StreamSpec]
    actor: Any = None
    poll: Any = None  # the ObjectRef of the pending take()
    polled_at: float = 0.0  # time.monotonic() when it was asked
    ended: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)
    deaths_in_a_row: int = 0
    restart: Restart | None = None  # the restart in progress (until its streams started)
    finished: bool = False  # the actor reported done: nothing more will come

    @property
    def open_specs(self) -> list[StreamSpec]:
        return [spec for spec in self.specs if spec.name not in self.ended]


class RayStreams:
    """The driver: ``run`` is `MultiStreamEngine.run`'s interface with the streams on actors.

    ``model`` (a directory path or None for the packaged model) must be readable on every node.
    ``actors``: how many (default one per node). ``restarts`` lists the replaced actors.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        backend: str = "onnxruntime",
        hop: int | None = None,
        batched: bool = True,
        actors: int | None = None,
        address: str = "auto",
        log: Callable[[str], None] = print,
    ) -> None:
        self.ray = connect(address)
        self.model = None if model is None else str(Path(model).resolve())
        self.backend, self.hop, self.batched, self.actors = backend, hop, batched, actors
        self.log = log
        self.groups: list[_Group] = []
        self.restarts: list[Restart] = []
        self.ledgers: dict[str, StreamLedger] = {}

    def written(self, name: str) -> int:
        """Event records of stream ``name`` handed out so far."""
        ledger = self.ledgers.get(name)
        return 0 if ledger is None else ledger.handed_out

    def run(
        self,
        specs: list[StreamSpec],
        on_event: Callable[[StreamEvent], None],
        on_end: Callable[[StreamReport], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_start: Callable[[str, str], None] | None = None,
    ) -> list[StreamReport]:
        """Run every stream on the cluster until each has ended or ``should_stop()``; returns
        their reports in ``specs`` order (a stream's report is from its last actor)."""
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError("stream names must be unique")
        specs = [_absolute(spec) for spec in specs]  # other nodes have other working folders
        gpus = self.backend in GPU_BACKENDS
        placements = plan_placements(self.ray.nodes(), len(specs), self.actors, gpus)
        groups = split_streams(specs, [p.cpus for p in placements])
        pairs = zip(placements, groups, strict=True)
        self.groups = [_Group(i, place, group) for i, (place, group) in enumerate(pairs)]
        reports: dict[str, StreamReport] = {}
        self.ledgers = {spec.name: StreamLedger(spec) for spec in specs}
        for group in self.groups:
            self._start(group, group.specs)
        stopping_since: float | None = None
        try:
            while any(not g.finished for g in self.groups):
                if stopping_since is None and should_stop():
                    stopping_since = time.monotonic()
                    for group in self.groups:
                        if not group.finished:
                            group.actor.stop.remote()
                if stopping_since and time.monotonic() - stopping_since > STOP_GRACE_SECONDS:
                    break
                polls = {g.poll: g for g in self.groups if not g.finished}
                ready, _ = self.ray.wait(list(polls), num_returns=1, timeout=POLL_SECONDS)
                for group in polls.values():  # hung: killed, so its poll fails and it is replaced
                    if time.monotonic() - group.polled_at > HANG_SECONDS:
                        self.log(f"ray: actor {group.index} answered nothing in {HANG_SECONDS} s")
                        self.ray.kill(group.actor)
                        group.polled_at = time.monotonic()
                for ref in ready:
                    group = polls[ref]
                    try:
                        messages, done = self.ray.get(ref)
                    except Exception as error:  # the actor died (or its call failed)
                        self._replace(group, error, reports, on_end, stopping_since is not None)
                        continue
                    self._handle(group, messages, reports, on_event, on_end, on_start)
                    if done:
                        group.finished = True
                        self.ray.kill(group.actor)
                    else:
                        group.poll = group.actor.take.remote(POLL_SECONDS)
                        group.polled_at = time.monotonic()
        finally:
            for group in self.groups:
                if not group.finished and group.actor is not None:
                    self.ray.kill(group.actor)
        for name in names:  # streams that never reported (stopped past the grace time)
            if name not in reports:
                reports[name] = StreamReport(name, StreamStats(), "stopped", stopped=True)
                if on_end is not None:
                    on_end(reports[name])
        return [reports[name] for name in names]

    def _start(self, group: _Group, specs: list[StreamSpec]) -> None:
        """A new actor for ``group`` running ``specs`` (soft affinity: its node if alive)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        placement = group.placement
        strategy = (
            NodeAffinitySchedulingStrategy(placement.node_id, soft=True)
            if placement.node_id
            else "DEFAULT"
        )
        worker = self.ray.remote(StreamWorker).options(
            num_cpus=placement.cpus,
            num_gpus=placement.gpus,
            max_restarts=0,  # the driver replaces it, with the resume points only it knows
            scheduling_strategy=strategy,
        )
        group.actor = worker.remote(
            self.model, self.backend, placement.threads, self.hop, self.batched
        )
        group.started = set()
        group.finished = False
        group.actor.start.remote(specs)
        group.poll = group.actor.take.remote(POLL_SECONDS)
        group.polled_at = time.monotonic()

    def _placement_after_death(self, placement: Placement) -> Placement:
        """``placement`` while its node is alive; else the same request on any node, its CPUs cut
        to the largest alive node's (a request no node can meet would never start)."""
        alive = [n for n in self.ray.nodes() if n.get("Alive")]
        if any(n["NodeID"] == placement.node_id for n in alive):
            return placement
        largest = max((n.get("Resources", {}).get("CPU", 0) for n in alive), default=1)
        cpus = min(placement.cpus, max(largest, 1))
        self.log(f"ray: its node is gone; the new actor asks any node for {cpus:g} CPUs")
        return dataclasses.replace(placement, node_id=None, cpus=cpus)

    def _replace(
        self,
        group: _Group,
        error: Exception,
        reports: dict[str, StreamReport],
        on_end: Callable[[StreamReport], None] | None,
        stopping: bool,
    ) -> None:
        """``group``'s actor died: a new one for its open streams, resumed where their written
        output ends; or, past ``MAX_RESTARTS`` deaths without output, or when stopping, their
        end with an error."""
        reason = _first_line(error)
        self.ray.kill(group.actor)
        group.deaths_in_a_row += 1
        open_specs = group.open_specs
        if stopping or group.deaths_in_a_row > MAX_RESTARTS or not open_specs:
            group.finished = True
            why = "stopping" if stopping else f"died {group.deaths_in_a_row} times in a row"
            for spec in open_specs:
                reports[spec.name] = StreamReport(
                    spec.name, StreamStats(), f"its Ray actor {why}: {reason}"
                )
                group.ended.add(spec.name)
                if on_end is not None:
                    on_end(reports[spec.name])
            return
        resumed = []
        for spec in open_specs:
            ledger = self.ledgers[spec.name]
            if spec.live and ledger.open_ids:
                ids = ", ".join(f"#{i}" for i in sorted(ledger.open_ids))
                self.log(f"ray: stream '{spec.name}' is live: its open events {ids} stay open")
            resumed.append(ledger.resumed_spec())
        group.placement = self._placement_after_death(group.placement)
        restart = Restart(
            group.index,
            [s.name for s in resumed],
            {s.name: s.skip_records for s in resumed},
            time.monotonic(),
            reason=reason,
        )
        group.restart = restart
        self.restarts.append(restart)
        self.log(
            f"ray: actor {group.index} died: {reason}; "
            f"restarting its streams {', '.join(restart.streams)} where their output ends"
        )
        self._start(group, resumed)

    def _handle(
        self,
        group: _Group,
        messages: list[tuple],
        reports: dict[str, StreamReport],
        on_event: Callable[[StreamEvent], None],
        on_end: Callable[[StreamReport], None] | None,
        on_start: Callable[[str, str], None] | None,
    ) -> None:
        for message in messages:
            kind, name = message[0], message[1]
            if kind == "start":
                group.started.add(name)
                if on_start is not None and group.restart is None:
                    on_start(name, message[2])
            elif kind == "event":
                item = self.ledgers[name].accept(message[2], message[3])
                if item is not None:
                    on_event(item)
            elif kind == "end":
                group.ended.add(name)
                reports[name] = message[2]
                if on_end is not None:
                    on_end(message[2])
            elif kind == "failed":  # message[1]: what failed
                for spec in group.open_specs:
                    reports[spec.name] = StreamReport(spec.name, StreamStats(), message[1])
                    group.ended.add(spec.name)
                    if on_end is not None:
                        on_end(reports[spec.name])
        if messages:
            group.deaths_in_a_row = 0
        restart = group.restart
        if restart is not None and set(restart.streams) <= group.started | group.ended:
            restart.resumed_after = time.monotonic() - restart.died_at
            group.restart = None
            self.log(
                f"ray: actor {group.index}'s streams resumed {restart.resumed_after:.1f} s after "
                "its death"
            )


def _absolute(spec: StreamSpec) -> StreamSpec:
    """``spec`` with its file as an absolute path."""
    return spec if spec.input is None else dataclasses.replace(spec, input=spec.input.resolve())


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def ray_runner(
    address: str,
    model: str | Path | None,
    backend: str,
    hop: int | None,
    actors: int | None,
    log: Callable[[str], None],
) -> Callable[..., list[StreamReport]]:
    """`MultiStreamEngine.run`'s stand-in for ``loco-stream --ray``: connects (`RayUnavailable`
    when it cannot) and returns the run of a `RayStreams`."""
    if actors is not None and actors < 1:
        raise ValueError(f"--ray-actors must be at least 1, not {actors}")
    return RayStreams(model, backend, hop, actors=actors, address=address, log=log).run
