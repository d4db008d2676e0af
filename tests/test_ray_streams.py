"""Streams on a Ray cluster (`loco_stream.stream.ray_cluster`): placement, the events of a
single process, an actor killed mid-run replaced with nothing repeated or lost, loopback only."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from loco_stream.cli.detect import main as detect_main
from loco_stream.cli.stream import main as stream_main
from loco_stream.offline import WORKER_DIED, ClipResult, ModelSpec, _ray_outcomes
from loco_stream.stream.lane import StreamEvent, StreamSpec
from loco_stream.stream.multi import MultiStreamEngine
from loco_stream.stream.ray_cluster import (
    INSTALL_HINT,
    RayStreams,
    RayUnavailable,
    StreamLedger,
    connect,
    import_ray,
    plan_placements,
    split_streams,
)
from loco_stream.stream.stitch import Event
from loco_stream.synth import sample_scenario, write_clip

CLIP_SECONDS = 12.0
STREAMS = 8  # 2 actors, 4 each
RESUME_LIMIT_S = 10.0


def node(node_id: str, cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_actors_follow_the_nodes_cpus():
    nodes = [node("small", 4), node("big", 16), node("dead", 64, alive=False)]
    default = plan_placements(nodes, streams=20)
    assert [(p.node_id, p.cpus, p.threads) for p in default] == [("big", 16, 16), ("small", 4, 4)]
    three = plan_placements(nodes, streams=20, actors=3)  # two share the big node
    assert [(p.node_id, p.cpus) for p in three] == [("big", 8), ("small", 4), ("big", 8)]
    assert len(plan_placements(nodes, streams=1)) == 1  # never more actors than streams
    with_gpus = plan_placements([node("cpu", 8), node("gpu", 8, gpus=2)], 4, gpus=True)
    assert [(p.node_id, p.gpus) for p in with_gpus] == [("gpu", 1.0)]
    with pytest.raises(RayUnavailable, match="no alive node with a GPU"):
        plan_placements([node("cpu", 8)], 4, gpus=True)


def test_groups_follow_the_actors_cpu_shares():
    specs = [StreamSpec(f"s{i}", input=Path(f"s{i}.mp4")) for i in range(10)]
    groups = split_streams(specs, [16, 4])
    assert [len(g) for g in groups] == [8, 2]
    assert [s.name for g in groups for s in g] == [s.name for s in specs]  # each once, in order
    assert [len(g) for g in split_streams(specs[:3], [1, 1, 100])] == [1, 1, 1]


def event(kind: str, event_id: int, at: float) -> Event:
    end = at - 0.5 if kind == "end" else None
    return Event(kind, event_id, "dog", 3, at - 2.0, end, 0.8, at)


def test_a_file_streams_ledger_hands_out_each_record_once_in_order():
    """Records 0..n-1 once each: a replayed record already handed out is dropped, a gap is an
    error, and the replacement skips what was handed out and catches up to its time."""
    ledger = StreamLedger(StreamSpec("door", input=Path("door.mp4"), realtime=True))
    records = [event("start", 0, 2.0), event("start", 1, 3.0), event("end", 0, 4.0)]
    handed = [ledger.accept(n, StreamEvent("door", e)) for n, e in enumerate(records)]
    assert [h.event for h in handed] == records
    resumed = ledger.resumed_spec()
    assert (resumed.skip_records, resumed.resume_at, resumed.realtime) == (3, 4.0, True)
    assert ledger.accept(2, StreamEvent("door", records[2])) is None  # already handed out
    later = event("end", 1, 9.0)
    assert ledger.accept(3, StreamEvent("door", later)).event == later
    with pytest.raises(RuntimeError, match="record 5 arrived after 4"):
        ledger.accept(5, StreamEvent("door", event("start", 2, 10.0)))
    assert (ledger.handed_out, ledger.open_ids) == (4, set())


def test_a_live_streams_ledger_shifts_a_resumed_streams_ids_past_the_written_ones():
    ledger = StreamLedger(StreamSpec("hall", camera="0", microphone="default"))
    for number, record in enumerate([event("start", 0, 2.0), event("start", 1, 3.0)]):
        ledger.accept(number, StreamEvent("hall", record))
    ledger.accept(2, StreamEvent("hall", event("end", 1, 4.0)))
    assert ledger.open_ids == {0}  # its end will never come: the worker that knew it died
    assert ledger.resumed_spec().skip_records == 0  # a live source resumes at "now"
    assert ledger.open_ids == set()
    renamed = ledger.accept(0, StreamEvent("hall", event("start", 0, 1.0)))  # the new worker
    assert renamed.event.id == 2 and renamed.stream == "hall"
    assert ledger.accept(1, StreamEvent("hall", event("end", 0, 2.0))).event.id == 2


def test_missing_ray_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayUnavailable, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        import_ray()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ray_clips")
    paths = []
    for index in range(STREAMS):
        scenario = sample_scenario(seed=901, index=index, duration=CLIP_SECONDS, split="fresh")
        paths.append(folder / f"clip{index}.mp4")
        write_clip(scenario, paths[-1])
    return paths


@pytest.fixture(scope="module")
def cluster():
    """A private local Ray cluster of 2 CPUs, shut down after this module's tests."""
    ray = connect("local", num_cpus=2)
    yield ray
    ray.shutdown()


def event_records(specs: list[StreamSpec], run) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {spec.name: [] for spec in specs}
    run(specs, lambda item: records[item.stream].append(item.to_record()))
    return records


def loopback(hex_address: str) -> bool:
    """Whether a /proc/net/tcp{,6} local address (hex, little-endian words) is a loopback one."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def ray_listening_addresses() -> list[tuple[str, bool]]:
    """(process, loopback) of every listening TCP socket of this process and Ray's processes."""
    listening = {}  # socket inode -> loopback
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening[fields[9]] = loopback(fields[1].split(":")[0])
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "ray" not in command and int(proc.name) != os.getpid():
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
                if inode in listening:
                    found.append((command.split()[0], listening[inode]))
        except (OSError, ValueError):  # gone, or not ours
            continue
    return found


@pytest.mark.slow
def test_actor_killed_mid_run_resumes_its_streams_without_repeats_or_losses(cluster, clips):
    """A private cluster (2 CPUs), 2 actors of 4 paced file streams each; one actor is killed
    once its streams have written events and before they end. Its streams run again within
    10 s, and every stream's records are exactly those of a single-process run."""
    specs = [StreamSpec(f"clip{i}", input=path, realtime=True) for i, path in enumerate(clips)]
    with MultiStreamEngine(None, threads=1) as engine:  # the single process, unpaced
        expected = event_records(
            [StreamSpec(s.name, input=s.input) for s in specs], lambda s, e: engine.run(s, e)
        )
    assert sum(map(len, expected.values())) >= 3 * STREAMS  # real events to lose or repeat

    assert ray_listening_addresses(), "found no socket of Ray's"
    assert all(local for _, local in ray_listening_addresses()), ray_listening_addresses()
    messages: list[str] = []
    driver = RayStreams(actors=2, address="local", log=messages.append)
    got: dict[str, list[dict]] = {spec.name: [] for spec in specs}
    ended: dict[str, float] = {}
    killed: dict = {}

    def kill_once_events_are_written() -> None:
        while not driver.groups or driver.groups[0].actor is None:
            time.sleep(0.05)
        group = driver.groups[0]
        names = [spec.name for spec in group.specs]
        while sum(len(got[name]) for name in names) < 3:
            time.sleep(0.02)
        killed["at"] = time.monotonic()
        killed["written"] = {name: len(got[name]) for name in names}
        killed["ended"] = [name for name in names if name in ended]
        import_ray().kill(group.actor)

    killer = threading.Thread(target=kill_once_events_are_written, daemon=True)
    killer.start()
    began = time.monotonic()
    reports = driver.run(
        specs,
        lambda item: got[item.stream].append(item.to_record()),
        lambda report: ended.setdefault(report.name, time.monotonic()),
    )
    run_seconds = time.monotonic() - began
    killer.join(timeout=1)

    assert [s.name for s in driver.groups[0].specs] == [f"clip{i}" for i in range(4)]
    assert killed and killed["ended"] == [], "the actor was not killed mid-run"
    assert [r.error for r in reports] == [None] * STREAMS, reports
    (restart,) = driver.restarts
    assert restart.streams == [f"clip{i}" for i in range(4)]
    assert restart.skipped == killed["written"]  # resumed exactly where the output ended
    assert restart.resumed_after is not None
    assert restart.died_at - killed["at"] + restart.resumed_after < RESUME_LIMIT_S
    after_kill = sum(len(got[n]) - killed["written"][n] for n in restart.streams)
    assert after_kill > 0, "nothing was left to write after the kill: the test proves nothing"
    for name in expected:
        assert got[name] == expected[name], name  # none repeated, none lost, same order
    # the killed streams caught up: paced clips end about CLIP_SECONDS after they start
    assert run_seconds < CLIP_SECONDS + 2 * RESUME_LIMIT_S, run_seconds
    assert any("resumed" in m for m in messages), messages
    assert all(local for _, local in ray_listening_addresses()), ray_listening_addresses()


@pytest.mark.slow
def test_loco_detect_on_ray_writes_what_one_process_writes(cluster, clips, tmp_path, capsys):
    """``loco-detect --ray`` (joining the running cluster) with 2 actors: the same results file
    as one process, a bad file reported and skipped."""
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    videos = [str(clips[0]), str(garbage), str(clips[1]), str(clips[2])]
    written = {}
    for name, extra in (("one", []), ("ray", ["--ray", "auto", "--workers", "2"])):
        output = tmp_path / f"{name}.json"
        assert detect_main([*videos, "--output", str(output), "--threads", "1", *extra]) == 1
        assert "garbage.mp4' could not be read" in capsys.readouterr().err
        written[name] = output.read_text()
    assert len(json.loads(written["one"])["results"]) == 3
    assert written["ray"] == written["one"]


@pytest.mark.slow
def test_loco_stream_ray_writes_the_files_of_one_process(cluster, clips, tmp_path, capsys):
    """``loco-stream --sources streams.yaml --output-dir DIR --ray`` (joining the running
    cluster, 2 actors) writes each stream's file with the records one process writes (all but
    the stats record, whose timings differ); a stream whose file is missing fails alone."""
    listed = "".join(
        f"  - name: s{i}\n    file: {clips[i]}\n    threshold: {0.3 + 0.1 * i:.1f}\n"
        for i in range(3)
    )
    sources = tmp_path / "streams.yaml"
    sources.write_text(f"streams:\n{listed}  - name: gone\n    file: {tmp_path / 'gone.mp4'}\n")
    files = {}
    for name, extra in (("one", []), ("ray", ["--ray", "auto", "--ray-actors", "2"])):
        out = tmp_path / name
        code = stream_main(["--sources", str(sources), "--output-dir", str(out), *extra])
        assert code == 1  # the missing file
        assert "stream 'gone'" in capsys.readouterr().err
        files[name] = {
            path.name: [line for line in path.read_text().splitlines() if '"stats"' not in line]
            for path in sorted(out.glob("*.jsonl"))
        }
    assert sorted(files["one"]) == ["s0.jsonl", "s1.jsonl", "s2.jsonl"]
    assert sum(map(len, files["one"].values())) > 0
    assert files["ray"] == files["one"]


@pytest.mark.slow
def test_a_clip_whose_ray_actor_dies_runs_once_more_then_is_reported(cluster, clips, tmp_path):
    """Actors that die (os._exit) on clip1 once and on clip2 always: clip1's second run gives
    its result, clip2 is reported after dying twice, the others are unaffected."""
    died_once = tmp_path / "died_once"

    class DyingDetector:
        def __init__(self, spec: ModelSpec) -> None:
            pass

        def detect(self, path: Path, max_events: int | None) -> ClipResult:
            if path.name == "clip1.mp4" and not died_once.exists():
                died_once.touch()
                os._exit(1)
            if path.name == "clip2.mp4":
                os._exit(1)
            return ClipResult(path, [{"label_id": 0}], 12.0)

    outcomes = _ray_outcomes(cluster, clips[:4], ModelSpec(), None, [1.0, 1.0], DyingDetector)
    results = {r.path.name: r for r in outcomes}
    assert sorted(results) == ["clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4"]
    assert [results[f"clip{i}.mp4"].error for i in (0, 1, 3)] == [None] * 3
    assert results["clip2.mp4"].error == WORKER_DIED
    assert died_once.exists()
