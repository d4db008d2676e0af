"""How many real-time streams one machine holds: one batched process against one process a stream.

    python benchmarks/bench_streams.py [--sets synthetic,efficientnet-logmel,efficientnet-vggish]
                                       [--seconds 20] [--max-streams 64] [--threads 2]

Every stream is a synthetic demo clip (16 fps 112x112 video, 16 kHz audio; ``loco_stream.synth``)
paced at real time. A count of streams is *held* when every stream's lag stays under ``MAX_LAG``
(1 s) after a ``WARM_UP`` of 2 s: the lag of a step is how long after its end (in wall time) its
features and its window (when one is due) were done. Two ways to run N streams:

- ``batched``: one process, `MultiStreamEngine` (``loco-stream --input ... --realtime``): a reader
  thread a stream, the extractors and the window graph called once per batch of due steps and
  windows (the model directory's ``*_batch.onnx`` graphs), ``--threads`` ONNX Runtime threads;
- ``separate``: N processes, each what ``loco-stream --input CLIP --realtime --threads 1`` runs
  (`StreamEngine` over a paced `FileSource`), instrumented for its lag; ``separate2`` the same
  with ``--threads 2``, loco-stream's default (optional: ``--modes batched,separate,separate2``).

Both load their models first and start pacing together (a shared monotonic start time), so start-up
is not counted. The largest count held is found by doubling then bisection, one trial of
``--seconds`` of media a count. At the largest count the batched process held, the per-stream cost
of each part is given in ms of CPU per second of media (decode: the reader threads' CPU time;
assemble: timeline and step assembly, frames resized; extract; window; stitch: decoding the
window's outputs and stitching).

Extractor sets: ``synthetic`` is the default model (its batched graphs exported here);
``efficientnet-logmel`` and ``efficientnet-vggish`` take their extractors from
``train.extractor_sets`` and a LoCo of the default model's architecture with their feature sizes
and random weights (speed does not depend on the weights). Without a VGGish checkpoint
(``--vggish``) VGGish gets random weights in the official layout. Model directories and clips are
cached under ``data/bench_streams/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = ROOT / "data" / "bench_streams"
SETS = ("synthetic", "efficientnet-logmel", "efficientnet-vggish")
MODES = ("batched", "separate", "separate2")
MAX_LAG = 1.0  # s: a stream whose steps are done later than this behind real time is not held
WARM_UP = 2.0  # s of stream before the lag counts (the first calls of a fresh session)
CLIPS = 8  # distinct clips, cycled over the streams
FIRST_GUESS = {"synthetic": 16, "efficientnet-logmel": 4, "efficientnet-vggish": 2}
MAX_PROCESSES = 48  # separate processes tried at most (memory: a few hundred MB each)


# ---- preparation: model directories with batched graphs, clips ----


def extractor_dims(set_name: str) -> tuple[int, int]:
    from train.extractor_sets import SETS as EXTRACTOR_SETS

    return EXTRACTOR_SETS[set_name].dims


def cached_dims(model: Path) -> tuple[int, int]:
    """(visual, audio) feature sizes of a cached model directory (an older set's differ)."""
    from loco_stream.bundle import read_card

    extractors = read_card(model).extractors
    return extractors["visual"].feature_dim, extractors["audio"].feature_dim


def model_dir(set_name: str, vggish: Path | None) -> Path:
    """The cached model directory of ``set_name`` with its batched graphs (built on first use)."""
    out = CACHE / "models" / set_name
    if (out / "loco_batch.onnx").is_file() and cached_dims(out) == extractor_dims(set_name):
        return out
    import torch

    from export.__main__ import main as export_main
    from loco_stream.bundle import DEFAULT_MODEL_DIR
    from loco_stream.model.checkpoint import load_checkpoint, save_checkpoint

    torch.set_num_threads(1)
    default_checkpoint = DEFAULT_MODEL_DIR / "loco.pt"
    if set_name == "synthetic":
        checkpoint, extractors = default_checkpoint, DEFAULT_MODEL_DIR / "extractors.pt"
    else:
        from loco_stream.features.vggish import VGGish
        from loco_stream.model import LoCo
        from train.extractor_sets import SETS as EXTRACTOR_SETS
        from train.extractor_sets import PretrainedFiles, write_extractor_set

        work = Path(tempfile.mkdtemp(prefix=f"bench_streams_{set_name}_"))
        files = PretrainedFiles()
        if set_name == "efficientnet-vggish":
            if vggish is None:
                torch.manual_seed(0)
                vggish = work / "vggish_random.pth"
                torch.save(VGGish().state_dict(), vggish)
                print(f"{set_name}: VGGish with random weights (no --vggish checkpoint)")
            files = PretrainedFiles(vggish=vggish, official=False)
        write_extractor_set(set_name, work, files=files)
        extractors = work / "extractors.pt"
        state = load_checkpoint(default_checkpoint)
        visual_dim, audio_dim = EXTRACTOR_SETS[set_name].dims
        state["config"]["model"].update(visual_dim=visual_dim, audio_dim=audio_dim)
        from loco_stream.config import config_from_dict

        torch.manual_seed(0)
        network = LoCo(config_from_dict(state["config"]).model)
        checkpoint = work / "loco.pt"
        save_checkpoint(
            checkpoint,
            {
                "model": network.state_dict(),
                "config": state["config"],
                "class_names": state["class_names"],
            },
        )
    args = ["--checkpoint", str(checkpoint), "--extractors", str(extractors)]
    status = export_main([*args, "--out", str(out), "--batch", "--force"])
    if status:
        raise SystemExit(f"bench_streams: exporting the {set_name} model directory failed")
    return out


def clips(seconds: float) -> list[Path]:
    """``CLIPS`` synthetic demo clips of ``seconds`` (cached)."""
    from loco_stream.synth import sample_scenario, write_clip

    folder = CACHE / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(CLIPS):
        path = folder / f"demo{index}_{seconds:g}s.mp4"
        if not path.is_file():
            write_clip(sample_scenario(1000 + index, 0, seconds, split="demo"), path)
        paths.append(path)
    return paths


# ---- trials (each in its own process) ----


def _wait_for_start() -> None:
    """Say "ready" (the model is loaded and warm), then wait for the shared start time (a
    monotonic reading on stdin): every trial process starts pacing at the same instant."""
    print("ready", flush=True)
    delay = float(sys.stdin.readline()) - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def trial_batched(model: Path, paths: list[Path], threads: int) -> dict:
    """N streams on one `MultiStreamEngine`, paced; the lag and cost of each stream."""
    from loco_stream.stream.multi import MultiStreamEngine, StreamSpec

    specs = [StreamSpec(f"s{i}", input=path, realtime=True) for i, path in enumerate(paths)]
    with MultiStreamEngine(model, threads=threads) as engine:
        _warm(engine.model)
        _wait_for_start()
        began = time.process_time()
        reports = engine.run(specs, lambda event: None, lag_from=WARM_UP)
        cpu = time.process_time() - began
    return {
        "cpu": cpu,
        "lags": [report.max_lag for report in reports],
        "errors": [report.error for report in reports if report.error],
        "media": [report.stats.media_seconds for report in reports],
        "parts": [report.parts for report in reports],
        "batched": engine.model.batched,
    }


def _warm(model) -> None:
    """One call of each graph (a fresh session's first run is slow)."""
    from loco_stream.features.steps import Step

    info, spec = model.info, model.spec
    frames = np.zeros((spec.frames_per_step, spec.frame_size, spec.frame_size, 3), np.uint8)
    step = Step(0, np.zeros(spec.samples_per_window, np.float32), frames)
    model.step_features(step)
    t = info.window
    model.run_window(
        np.zeros((1, t, info.visual_dim), np.float32),
        np.zeros((1, t, info.audio_dim), np.float32),
        np.ones((1, t), np.float32),
    )


def trial_single(model: Path, path: Path, threads: int) -> dict:
    """One stream as ``loco-stream --input PATH --realtime --threads N`` runs it, with its lag."""
    from loco_stream.model_dir import ModelDir
    from loco_stream.sources import FileSource
    from loco_stream.stream.engine import StreamEngine

    with ModelDir(model, threads=threads) as loaded:
        _warm(loaded)
        engine = StreamEngine(loaded)
        _wait_for_start()
        cpu = time.process_time()
        source = FileSource(path, realtime=True)
        max_lag, steps, decode = None, 0, 0.0
        items = iter(source)
        while True:
            began = time.thread_time()
            item = next(items, None)
            decode += time.thread_time() - began
            if item is None:
                break
            engine.push(item)
            if engine.ring.next_step > steps:
                steps = engine.ring.next_step
                if engine.now > WARM_UP:
                    lag = time.monotonic() - (source.clock.origin + engine.now)
                    max_lag = lag if max_lag is None else max(max_lag, lag)
        engine.finish()
        source.close()
        cpu = time.process_time() - cpu
    stats = engine.stats
    other = stats.compute_seconds - stats.extract_seconds - stats.window_seconds
    return {
        "lag": max_lag,
        "cpu": cpu,
        "media": stats.media_seconds,
        "parts": {
            "decode": decode,
            "extract": stats.extract_seconds,
            "window": stats.window_seconds,
            "assemble+stitch": other,
        },
    }


# ---- the search ----


@dataclass
class Trial:
    count: int
    held: bool
    max_lag: float
    result: dict


def _python() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve())]


def run_trial(mode: str, model: Path, count: int, paths: list[Path], threads: int) -> Trial:
    """Run ``count`` streams in ``mode``; held when every stream's lag < MAX_LAG."""
    chosen = [paths[i % len(paths)] for i in range(count)]
    base = [*_python(), "--model", str(model), "--trial"]
    if mode == "batched":
        commands = [[*base, "batched", "--threads", str(threads), "--clips", *map(str, chosen)]]
    else:
        each = "2" if mode == "separate2" else "1"
        commands = [[*base, "single", "--threads", each, "--clips", str(path)] for path in chosen]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True, "env": env}
    processes = [subprocess.Popen(command, **pipes) for command in commands]
    for process in processes:  # every model loaded and warm before the pacing starts
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench_streams: a {mode} trial process did not start")
    start = time.monotonic() + 0.2
    for process in processes:
        process.stdin.write(f"{start}\n")
        process.stdin.flush()
    outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
    if any(p.returncode for p in processes):
        raise SystemExit(f"bench_streams: a {mode} trial failed")
    if mode == "batched":
        result = outputs[0]
        lags = result["lags"]
    else:
        lags = [out["lag"] for out in outputs]
        result = {"lags": lags, "parts": [out["parts"] for out in outputs]}
        result["media"] = [out["media"] for out in outputs]
        result["cpu"] = sum(out["cpu"] for out in outputs)
    worst = max((lag if lag is not None else float("inf")) for lag in lags)
    held = worst < MAX_LAG and not result.get("errors")
    return Trial(count, held, worst, result)


class Search:
    """The largest count held: doubling (or halving) from a guess to bracket it, then bisection."""

    def __init__(self, mode: str, guess: int, limit: int) -> None:
        self.mode, self.limit = mode, limit
        self.count = max(1, min(guess, limit))  # the next count to try
        self.best: Trial | None = None  # the largest count held so far
        self.failed: int | None = None  # the smallest count not held so far
        self.done = False
        self.trials: list[Trial] = []

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        count = trial.count
        if trial.held:
            self.best = trial
            if count >= self.limit or (self.failed is not None and count + 1 >= self.failed):
                self.done = True
            elif self.failed is None:
                self.count = min(self.limit, count * 2)
            else:
                self.count = (count + self.failed) // 2
        else:
            self.failed = count
            if count == 1 or (self.best is not None and self.best.count + 1 >= count):
                self.done = True
            elif self.best is None:
                self.count = max(1, count // 2)
            else:
                self.count = (self.best.count + count) // 2


def search_all(
    modes: list[str], model: Path, paths: list[Path], threads: int, guess: int, limit: int
) -> dict[str, Search]:
    """Every mode's search, their trials interleaved (a busy machine's load drifts: both modes
    then meet about the same load)."""
    searches = {
        mode: Search(mode, guess, limit if mode == "batched" else min(limit, MAX_PROCESSES))
        for mode in modes
    }
    while not all(search.done for search in searches.values()):
        for search in searches.values():
            if search.done:
                continue
            trial = run_trial(search.mode, model, search.count, paths, threads)
            print(
                f"  {search.mode:<8} {trial.count:>3} streams: max lag {trial.max_lag:6.2f} s "
                f"{'held' if trial.held else 'NOT held'}, CPU {cpu_per_stream(trial):5.1f} ms "
                "per stream-second",
                flush=True,
            )
            search.record(trial)
    return searches


def cpu_per_stream(trial: Trial) -> float:
    """The trial's processes' CPU time (all threads), ms per second of media per stream."""
    return trial.result["cpu"] / sum(trial.result["media"]) * 1000


# ---- report ----


def parts_table(trial: Trial) -> list[str]:
    """Per-stream cost of each part, ms of CPU a second of media, at ``trial``'s count."""
    parts = trial.result["parts"]
    media = sum(trial.result["media"])
    names = list(parts[0])
    total = {name: sum(p[name] for p in parts) / media * 1000 for name in names}
    return [f"  {name:<16} {total[name]:7.1f}" for name in names] + [
        f"  {'all':<16} {sum(total.values()):7.1f}"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated extractor sets")
    parser.add_argument("--modes", default="batched,separate", help="batched,separate[,separate2]")
    parser.add_argument("--seconds", type=float, default=20.0, help="media per trial (20)")
    parser.add_argument("--max-streams", type=int, default=64, help="largest count tried (64)")
    parser.add_argument("--threads", type=int, default=2, help="ORT threads, batched (2)")
    parser.add_argument("--vggish", type=Path, help="a VGGish checkpoint (else random weights)")
    parser.add_argument("--out", type=Path, help="write every trial as JSON here")
    parser.add_argument("--trial", choices=["batched", "single"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=Path, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trial == "batched":
        print(json.dumps(trial_batched(args.model, args.clips, args.threads)))
        return 0
    if args.trial == "single":
        print(json.dumps(trial_single(args.model, args.clips[0], args.threads)))
        return 0

    sets = [s for s in args.sets.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(sets) - set(SETS)) + sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown set or mode: {', '.join(unknown)}")
    paths = clips(args.seconds)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"{args.seconds:g} s of media a trial, held = every stream's lag < {MAX_LAG:g} s "
        f"after {WARM_UP:g} s",
        flush=True,
    )
    rows, details, everything = [], [], {}
    for set_name in sets:
        model = model_dir(set_name, args.vggish)
        print(f"{set_name}: {model}", flush=True)
        guess = FIRST_GUESS[set_name]
        searches = search_all(modes, model, paths, args.threads, guess, args.max_streams)
        everything[set_name] = {m: [t.__dict__ for t in s.trials] for m, s in searches.items()}
        cells = []
        for mode in modes:
            best = searches[mode].best
            if best is None:
                cells.append(f"{0:>4} {'':>8} {'':>6}")
            else:
                cells.append(f"{best.count:>4} {best.max_lag:6.2f} s {cpu_per_stream(best):6.1f}")
        ratio = "-"
        if (
            "separate" in searches
            and "batched" in searches
            and searches["separate"].best
            and searches["batched"].best
        ):
            ratio = f"{searches['batched'].best.count / searches['separate'].best.count:.2f}"
        rows.append(f"{set_name:<20} " + "   ".join(cells) + f"   {ratio:>5}")
        for mode in modes:
            best = searches[mode].best
            if best is not None:
                details.append(f"{set_name}, {mode}, {best.count} streams:")
                details += parts_table(best)
    print()
    header = "   ".join(f"{m + ': held, lag, CPU':<24}" for m in modes)
    print(f"{'extractor set':<20} {header}   held ratio")
    print("\n".join(rows))
    print(
        "\nCPU: ms of CPU (every thread of the trial's processes) per second of media per stream."
        "\nper-stream cost of each part, ms per second of media, at the largest count held (decode:"
        "\nthe reader's CPU time; the others: time in the engine's thread):"
    )
    print("\n".join(details))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
