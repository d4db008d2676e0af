"""Many file streams on a private local Ray cluster against one process, and an actor's restart.

    python benchmarks/bench_ray.py [--videos data/synth/videos] [--streams 8] [--actors 1,2]
        [--cpus N] [--kill-after 3]

Every stream is a clip read as fast as it decodes (not paced), so the figure is throughput:
media-hours per hour of the streams together. Rows: the streams in this process on one
`MultiStreamEngine` (2 threads), then on ``--actors`` actors of a private cluster of ``--cpus``
CPUs (the cluster's start is timed apart; each run includes starting its actors and loading
their models), then the largest actor count again with actor 0 killed (``ray.kill``) once its
streams have handed out ``--kill-after`` events: how long until its streams ran again, the time
the run lost, and whether every stream's records still equal the single process's.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loco_stream.stream.multi import MultiStreamEngine, StreamSpec  # noqa: E402
from loco_stream.stream.ray_cluster import RayStreams, connect  # noqa: E402

DEFAULT_VIDEOS = ROOT / "data" / "synth" / "videos"


def records_of(run, specs: list[StreamSpec]) -> tuple[float, dict[str, list[dict]], float]:
    """Wall seconds of ``run(specs, on_event)``, the records per stream, the media seconds."""
    records: dict[str, list[dict]] = {spec.name: [] for spec in specs}
    began = time.perf_counter()
    reports = run(specs, lambda item: records[item.stream].append(item.to_record()))
    wall = time.perf_counter() - began
    failed = [r for r in reports if r.error]
    if failed:
        raise SystemExit(f"bench_ray: error: stream '{failed[0].name}': {failed[0].error}")
    return wall, records, sum(r.stats.media_seconds for r in reports)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--actors", default="1,2", help="comma-separated actor counts")
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--kill-after", type=int, default=3, metavar="EVENTS")
    args = parser.parse_args(argv)
    paths = sorted(args.videos.glob("*.mp4"))[: args.streams]
    if len(paths) < args.streams:
        print(f"bench_ray: error: fewer than {args.streams} .mp4 in {args.videos}", file=sys.stderr)
        return 2
    specs = [StreamSpec(f"s{i}", input=path) for i, path in enumerate(paths)]
    rows = []
    with MultiStreamEngine(None, threads=2) as engine:
        wall, expected, media = records_of(lambda s, e: engine.run(s, e), specs)
    rows.append(("one process, 2 threads", wall, media, "", "same"))
    began = time.perf_counter()
    connect("local", num_cpus=args.cpus)
    cluster_start = time.perf_counter() - began
    actor_counts = [int(a) for a in args.actors.split(",")]
    for actors in actor_counts:
        driver = RayStreams(actors=actors, address="local", log=lambda message: None)
        wall, got, media = records_of(driver.run, specs)
        rows.append((f"Ray, {actors} actor(s)", wall, media, "", _same(got, expected)))
    driver = RayStreams(actors=actor_counts[-1], address="local", log=lambda message: None)
    killer = threading.Thread(target=_kill_first_actor, args=(driver, args.kill_after))
    killer.start()
    wall, got, media = records_of(driver.run, specs)
    killer.join()
    resumed = [r.resumed_after for r in driver.restarts]
    note = ", ".join(f"resumed {r:.1f} s after its death" for r in resumed if r is not None)
    rows.append(
        (
            f"Ray, {actor_counts[-1]} actor(s), actor 0 killed",
            wall,
            media,
            note,
            _same(got, expected),
        )
    )
    print(
        f"private Ray cluster of {args.cpus} CPUs started in {cluster_start:.1f} s; "
        f"{len(specs)} streams, {media / 3600:.3f} media-hours"
    )
    print("| run | wall (s) | media-h per h | records vs one process | restart |")
    print("|---|---:|---:|---|---|")
    for name, wall, media, note, same in rows:
        print(f"| {name} | {wall:.1f} | {media / 3600 / (wall / 3600):.0f} | {same} | {note} |")
    return 0


def _same(got: dict, expected: dict) -> str:
    differ = [name for name in expected if got[name] != expected[name]]
    return "same" if not differ else f"DIFFER: {', '.join(differ)}"


def _kill_first_actor(driver: RayStreams, after_events: int) -> None:
    """Kill actor 0 once its streams' events handed out reach ``after_events``."""
    import ray

    while not driver.groups or driver.groups[0].actor is None:
        time.sleep(0.02)
    names = [spec.name for spec in driver.groups[0].specs]
    while sum(driver.written(name) for name in names) < after_events:
        if driver.groups[0].finished:
            return
        time.sleep(0.01)
    ray.kill(driver.groups[0].actor)


if __name__ == "__main__":
    sys.exit(main())
