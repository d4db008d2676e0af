"""Bad inputs over every entry point, tried as a hostile user would: docs/bad_inputs.md's table.

    python benchmarks/sweep_bad_inputs.py [--before DIR] [--only TEXT] [--jobs 2]

Each case runs in its own process (a command line, or a few lines of the Python API) in a scratch
folder that holds the media, model directories, configs and result files made for the sweep; a
full disk is a small tmpfs (as root; its cases are skipped otherwise). A case gets a clear answer
when it exits with the status expected, says the words expected, prints no traceback and leaves
its files as expected (whole JSON lines, an earlier file kept). ``--before DIR`` also runs every
case on another source tree (``git archive COMMIT | tar -x -C DIR``) and prints both answers.
Prints the table (markdown) and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODULES = {
    "loco-stream": "loco_stream.cli.stream",
    "loco-detect": "loco_stream.cli.detect",
    "loco-eval": "loco_stream.cli.eval",
    "loco-synth": "loco_stream.cli.synth",
    "loco-train": "train.pipeline",
    "python -m export": "export",
}
TIMEOUT_S = 120
NO_TORCH = "import sys; sys.modules['torch'] = None; import runpy; "
API_PREAMBLE = """
import logging, sys
import numpy as np
from loco_stream.sources.base import VideoFrame
from loco_stream.sources.demo import DemoSource
from loco_stream.stream.detector import Detector
from loco_stream.stream.multi_detector import MultiDetector
ITEMS = list(DemoSource(seed=334, duration=20.0, realtime=False))
def feed(push_frame, push_audio, items=ITEMS, rate=16000):
    for item in items:
        if isinstance(item, VideoFrame):
            push_frame(item.image, item.t)
        else:
            push_audio(item.samples, item.t, rate)
def refused(call):
    try:
        call()
    except Exception as error:
        print(f"{type(error).__name__}: {error}")
    else:
        print("accepted")
"""


@dataclass
class Case:
    """One bad input: where, what, how it is run, and what a clear answer is."""

    where: str
    what: str
    args: list[str] | str  # a command's arguments, or Python code (where "API")
    status: int | tuple[int, ...]  # the exit status expected
    says: list[str] = field(default_factory=list)  # words the output must hold
    check: Callable[[Path, str], bool] | None = None  # files as expected (scratch, output)
    needs: str = ""  # "tmpfs": skipped without one


@dataclass
class Answer:
    clear: bool
    summary: str


def whole_json_lines(path: Path) -> bool:
    """Every line of ``path`` (none, maybe) is a whole JSON record."""
    try:
        text = path.read_text()
        lines = text.splitlines()
        return text.endswith("\n") == bool(lines) and all(json.loads(line) for line in lines)
    except (OSError, ValueError):
        return False


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


def make_scratch(work: Path) -> bool:
    """Media, model directories, configs and files for the cases; True with a tmpfs."""
    from loco_stream.bundle import CARD, DEFAULT_MODEL_DIR
    from tests.media import make_clip
    from tests.test_stream_support import demo_scenario, write_scenario_clip

    write_scenario_clip(demo_scenario(334, 20.0), work / "clip.mp4")
    make_clip(work / "silent.mp4", audio_rate=None)
    data = (work / "clip.mp4").read_bytes()
    (work / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
    damaged = bytearray(data)
    damaged[len(data) // 3 : len(data) * 2 // 3 : 97] = bytes(len(range(0, len(data) // 3, 97)))
    (work / "corrupt.mp4").write_bytes(bytes(damaged))
    (work / "text.mp4").write_text("not a video\n")
    (work / "empty.mp4").write_bytes(b"")
    os.mkfifo(work / "pipe.mp4")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=3", work / "tone.m4a"],
        check=True,
    )
    card = json.loads((DEFAULT_MODEL_DIR / CARD).read_text())
    models = {
        "classes_str": ("window", "classes", "abc"),
        "window_str": ("window", "window", "40"),
        "embed_huge": ("model", "embed_dim", 10**12),
        "step_str": ("window", "step_seconds", "0.25"),
        "feature_dim_str": ("audio", "feature_dim", "128"),
        "heads_zero": ("model", "num_heads", 0),
    }
    for name, (part, key, value) in models.items():
        folder = work / "models" / name
        folder.mkdir(parents=True)
        for path in DEFAULT_MODEL_DIR.iterdir():
            (folder / path.name).symlink_to(path)
        (folder / CARD).unlink()
        changed = json.loads(json.dumps(card))
        section = {
            "window": changed["window"],
            "model": changed["window"]["model"],
            "audio": changed["extractors"]["audio"],
        }[part]
        section[key] = value
        (folder / CARD).write_text(json.dumps(changed))
    (work / "models" / "not_json").mkdir()
    (work / "models" / "not_json" / CARD).write_text("{")
    shutil.copytree(DEFAULT_MODEL_DIR, work / "models" / "other_weights")
    changed = json.loads(json.dumps(card))
    changed["files"]["loco.pt"]["sha256"] = "0" * 64
    (work / "models" / "other_weights" / CARD).write_text(json.dumps(changed))
    shutil.copytree(DEFAULT_MODEL_DIR, work / "models" / "damaged")
    with open(work / "models" / "damaged" / "loco.onnx", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 64)
    shutil.copy(DEFAULT_MODEL_DIR / "loco.pt", work / "loco.pt")
    shutil.copy(DEFAULT_MODEL_DIR / "extractors.pt", work / "extractors.pt")
    files = {
        "streams_tag.yaml": "- name: a\n  file: !!python/object/apply:os.system [id]\n",
        "streams_map.yaml": "name: a\nfile: clip.mp4\n",
        "streams_threshold.yaml": "- name: a\n  file: clip.mp4\n  threshold: high\n",
        "streams_twice.yaml": "- {name: a, file: clip.mp4}\n- {name: a, file: clip.mp4}\n",
        "config_tag.yaml": "model: !!python/object/apply:os.system [id]\n",
        "config_key.yaml": "model: {embed_dims: 64}\n",
        "not.json": "{",
        "gt.json": json.dumps(
            {
                "database": {
                    "v": {"subset": "test", "annotations": [{"segment": [1.0, 3.0], "label_id": 0}]}
                }
            }
        ),
        "gt_str.json": json.dumps(
            {
                "database": {
                    "v": {"subset": "test", "annotations": [{"segment": ["1", "3"], "label_id": 0}]}
                }
            }
        ),
        "empty_database.json": json.dumps({"database": {}}),
        "results.json": json.dumps({"results": {"earlier": []}}),
    }
    predictions = {
        "pred_reversed.json": [{"segment": [3.0, 1.0], "label_id": 0, "score": 0.9}],
        "pred_score_str.json": [{"segment": [1.0, 3.0], "label_id": 0, "score": "high"}],
        "pred_score_nan.json": [{"segment": [1.0, 3.0], "label_id": 0, "score": float("nan")}],
        "pred_negative.json": [{"segment": [-1.0, 3.0], "label_id": 0, "score": 0.9}],
        "pred_unknown_label.json": [{"segment": [1.0, 3.0], "label_id": 7, "score": 0.9}],
        "pred_no_segment.json": [{"label_id": 0, "score": 0.9}],
        "pred_empty.json": [],
        "pred_ok.json": [{"segment": [1.0, 3.0], "label_id": 0, "score": 0.9}],
    }
    for name, entries in predictions.items():
        files[name] = json.dumps({"results": {"v": entries}})
    files["pred_list.json"] = json.dumps({"results": []})
    for name, text in files.items():
        (work / name).write_text(text)
    (work / "videos").mkdir()
    (work / "synth_bad").mkdir()
    (work / "synth_bad" / "annotations.json").write_text("[")
    for name in ("full_stream", "full_detect", "full_many"):
        (work / name).mkdir()
    if os.geteuid() != 0:
        return False
    for name, size in (("full_stream", "8k"), ("full_detect", "8k"), ("full_many", "8k")):
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", work / name])
    fill(work / "full_detect")
    fill(work / "full_many")
    (work / "full_detect" / "results.json").touch()
    return True


def unmount(work: Path) -> None:
    for name in ("full_stream", "full_detect", "full_many"):
        subprocess.run(["umount", work / name], stderr=subprocess.DEVNULL)


def detect_keeps(name: str) -> Callable[[Path, str], bool]:
    return lambda work, out: json.loads((work / name).read_text())["results"] == {"earlier": []}


def only_events(work: Path, out: str) -> bool:
    entries = json.loads((work / "events.json").read_text())["results"]["clip"]
    return bool(entries) and all(entry["score"] >= 0.3 for entry in entries)


def once(word: str) -> Callable[[Path, str], bool]:
    return lambda work, out: out.count(word) == 1


def cases() -> list[Case]:  # noqa: PLR0915 - a table
    stream, detect, ev, synth = "loco-stream", "loco-detect", "loco-eval", "loco-synth"
    train, export = "loco-train", "python -m export"
    clip, api = "clip.mp4", "API"
    model = ["--input", clip, "--model"]
    train_base = ["--videos", "videos", "--annotations", "empty_database.json", "--out", "m"]
    return [
        # loco-stream: sources
        Case(stream, "--input of a missing file", ["--input", "nope.mp4"], 1, ["does not exist"]),
        Case(stream, "--input of a folder", ["--input", "videos"], 1, ["is a folder"]),
        Case(
            stream,
            "--input of a named pipe (FIFO)",
            ["--input", "pipe.mp4"],
            1,
            ["not a regular file"],
        ),
        Case(
            stream,
            "--input of a device (/dev/null)",
            ["--input", "/dev/null"],
            1,
            ["not a regular file"],
        ),
        Case(stream, "--input of a text file", ["--input", "text.mp4"], 1, ["could not be read"]),
        Case(
            stream, "--input of an empty file", ["--input", "empty.mp4"], 1, ["could not be read"]
        ),
        Case(
            stream,
            "--input without video (audio only)",
            ["--input", "tone.m4a"],
            1,
            ["no video track"],
        ),
        Case(stream, "--input without audio", ["--input", "silent.mp4"], 1, ["no audio track"]),
        Case(
            stream, "--input truncated at 60%", ["--input", "truncated.mp4"], (0, 1), ["truncated"]
        ),
        Case(
            stream,
            "--input with a third of its packets damaged",
            ["--input", "corrupt.mp4"],
            (0, 1),
            ["undecodable"],
            once("undecodable"),
        ),
        Case(stream, "--camera without --mic", ["--camera", "0"], 2, ["--mic"]),
        Case(stream, "no source at all", [], 2, ["give one source"]),
        Case(stream, "--realtime with --demo", ["--demo", "--realtime"], 2, ["--realtime"]),
        Case(stream, "--seed with --input", ["--input", clip, "--seed", "3"], 2, ["--demo"]),
        Case(stream, "--demo --duration inf", ["--demo", "--duration", "inf"], 2, ["--duration"]),
        Case(stream, "--demo --duration -1", ["--demo", "--duration", "-1"], 2, ["--duration"]),
        Case(
            stream, "--demo --seed -1", ["--demo", "--seed", "-1", "--duration", "1"], (0, 1, 2), []
        ),
        # loco-stream: options
        Case(stream, "--threads 0", ["--demo", "--threads", "0"], 2, ["--threads"]),
        Case(stream, "--threads 100000", ["--demo", "--threads", "100000"], 2, ["--threads"]),
        Case(stream, "--threshold 1.5", ["--demo", "--threshold", "1.5"], 2, ["--threshold"]),
        Case(stream, "--threshold nan", ["--demo", "--threshold", "nan"], 2, ["--threshold"]),
        Case(stream, "--hop 0", ["--demo", "--hop", "0"], 2, ["--hop"]),
        Case(
            stream,
            "--hop 100000 (beyond the window)",
            [*model[:2], "--hop", "100000"],
            2,
            ["--hop"],
        ),
        Case(
            stream, "--stats 0 (a line per item)", ["--input", clip, "--stats", "0"], 2, ["--stats"]
        ),
        Case(stream, "--stats nan (never)", ["--input", clip, "--stats", "nan"], 2, ["--stats"]),
        Case(
            stream,
            "--ray-actors 0",
            ["--input", clip, "--ray", "--ray-actors", "0"],
            2,
            ["--ray-actors"],
        ),
        Case(stream, "--pre without --evidence", ["--demo", "--pre", "3"], 2, ["--evidence"]),
        Case(
            stream,
            "--evidence-max-mb -5",
            ["--input", clip, "--evidence", "ev", "--evidence-max-mb", "-5"],
            2,
            ["max"],
        ),
        Case(stream, "--mqtt host:notaport", ["--demo", "--mqtt", "localhost:port"], 2, ["port"]),
        Case(stream, "--webhook ftp://x", ["--demo", "--webhook", "ftp://x"], 2, ["http"]),
        Case(
            stream,
            "--serve 0.0.0.0:8080 without --serve-remote",
            ["--demo", "--serve", "0.0.0.0:8080"],
            2,
            ["--serve-remote"],
        ),
        Case(
            stream,
            "--backend tensorrt without TensorRT or a GPU",
            ["--input", clip, "--backend", "tensorrt"],
            1,
            ["error:"],
        ),
        # loco-stream: model directories
        Case(stream, "--model of a missing folder", [*model, "nope"], 1, ["no such model"]),
        Case(
            stream,
            '--model card: `classes: "abc"`',
            [*model, "models/classes_str"],
            1,
            ["classes must be a list"],
        ),
        Case(
            stream,
            '--model card: `window: "40"` (a string)',
            [*model, "models/window_str"],
            1,
            ["must be a whole number"],
        ),
        Case(
            stream,
            '--model card: `step_seconds: "0.25"`',
            [*model, "models/step_str"],
            1,
            ["must be a number"],
        ),
        Case(
            stream,
            '--model card: extractor `feature_dim: "128"`',
            [*model, "models/feature_dim_str"],
            1,
            ["must be a whole number"],
        ),
        Case(
            stream,
            "--model card: `embed_dim: 10**12`",
            [*model, "models/embed_huge"],
            1,
            ["embed_dim must be at most"],
        ),
        Case(
            stream,
            "--model card: `num_heads: 0`",
            [*model, "models/heads_zero"],
            1,
            ["num_heads must be at least 1"],
        ),
        Case(stream, "--model card: not JSON", [*model, "models/not_json"], 1, ["not valid JSON"]),
        Case(stream, "--model with a damaged graph", [*model, "models/damaged"], 1, ["loco.onnx"]),
        # loco-stream: outputs
        Case(
            stream,
            "--output in a missing folder",
            ["--input", clip, "--output", "no/e.jsonl"],
            1,
            ["cannot write --output"],
        ),
        Case(
            stream,
            "--output is a folder",
            ["--input", clip, "--output", "videos"],
            1,
            ["cannot write --output"],
        ),
        Case(
            stream,
            "--output /proc/version (not writable)",
            ["--input", clip, "--output", "/proc/version"],
            1,
            ["cannot write '/proc/version'"],
        ),
        Case(
            stream,
            "--output on a disk that fills (8 KB tmpfs, --stats 0.25)",
            ["--input", clip, "--stats", "0.25", "--output", "full_stream/e.jsonl"],
            1,
            ["No space left on device"],
            lambda w, o: (
                whole_json_lines(w / "full_stream/e.jsonl") and o.count("No space left") == 1
            ),
            "tmpfs",
        ),
        Case(
            stream,
            "--output-dir on a disk that fills (two streams)",
            ["--input", clip, "--input", "corrupt.mp4", "--output-dir", "full_many"],
            1,
            ["No space left on device", "2 streams"],
            lambda w, o: all(whole_json_lines(p) for p in (w / "full_many").glob("*.jsonl")),
            "tmpfs",
        ),
        Case(
            stream,
            "--output-dir is a file",
            ["--input", clip, "--input", clip, "--output-dir", "not.json"],
            1,
            ["cannot write"],
        ),
        Case(stream, "--sources missing", ["--sources", "nope.yaml"], 1, ["nope.yaml"]),
        Case(
            stream,
            "--sources with a Python YAML tag",
            ["--sources", "streams_tag.yaml"],
            1,
            ["streams_tag.yaml"],
        ),
        Case(
            stream,
            "--sources a mapping, not a list",
            ["--sources", "streams_map.yaml"],
            1,
            ["list"],
        ),
        Case(
            stream,
            "--sources with `threshold: high`",
            ["--sources", "streams_threshold.yaml"],
            1,
            ["threshold"],
        ),
        Case(
            stream,
            "--sources naming one stream twice",
            ["--sources", "streams_twice.yaml"],
            1,
            ["names repeat"],
        ),
        # loco-detect
        Case(detect, "no videos", ["--output", "r.json"], 2, ["videos"]),
        Case(detect, "a missing video", ["nope.mp4", "--output", "r.json"], 1, ["skipped"]),
        Case(detect, "a text file as a video", ["text.mp4", "--output", "r.json"], 1, ["skipped"]),
        Case(detect, "a video without audio", ["silent.mp4", "--output", "r.json"], 1, ["skipped"]),
        Case(
            detect,
            "every clip failing, over an earlier results file",
            ["nope.mp4", "--output", "results.json"],
            1,
            ["left as it was"],
            detect_keeps("results.json"),
        ),
        Case(
            detect,
            "--output on a full disk",
            [clip, "--output", "full_detect/results.json"],
            1,
            ["No space left on device"],
            None,
            "tmpfs",
        ),
        Case(detect, "--output is a folder", [clip, "--output", "videos"], 2, ["is a folder"]),
        Case(
            detect,
            "--output in a missing folder",
            [clip, "--output", "no/r.json"],
            2,
            ["does not exist"],
        ),
        Case(
            detect, "--workers 0", [clip, "--output", "r.json", "--workers", "0"], 2, ["--workers"]
        ),
        Case(
            detect,
            "--workers 100000",
            [clip, "--output", "r.json", "--workers", "100000"],
            2,
            ["--workers"],
        ),
        Case(
            detect, "--threads 0", [clip, "--output", "r.json", "--threads", "0"], 2, ["--threads"]
        ),
        Case(
            detect,
            "--max-events 0",
            [clip, "--output", "r.json", "--max-events", "0"],
            2,
            ["--max-events"],
        ),
        Case(
            detect,
            "--threshold 2",
            [clip, "--output", "r.json", "--threshold", "2"],
            2,
            ["--threshold"],
        ),
        Case(
            detect,
            "--threshold 0.3 (events only, not candidates)",
            [clip, "--output", "events.json", "--threshold", "0.3"],
            0,
            [],
            only_events,
        ),
        Case(
            detect,
            "a clip whose 100 candidates score low (the cap is reached)",
            ["corrupt.mp4", "--output", "r.json"],
            0,
            ["not detections"],
        ),
        Case(
            detect,
            "a clip with a third of its packets damaged",
            ["corrupt.mp4", "--output", "r.json"],
            0,
            ["undecodable"],
            once("undecodable"),
        ),
        Case(
            detect,
            "--annotations not JSON",
            [clip, "--output", "r.json", "--annotations", "not.json"],
            1,
            ["not.json"],
        ),
        Case(
            detect,
            "--annotations missing",
            [clip, "--output", "r.json", "--annotations", "nope.json"],
            1,
            ["nope.json"],
        ),
        Case(
            detect,
            "--plot is a file",
            [clip, "--output", "r.json", "--plot", "not.json"],
            2,
            ["--plot"],
        ),
        Case(
            detect,
            "--ray taking a video as its address",
            ["--output", "r.json", "--ray", clip],
            2,
            ["--ray"],
        ),
        Case(
            detect,
            '--model card: `classes: "abc"`',
            [clip, "--output", "r.json", "--model", "models/classes_str"],
            1,
            ["classes must be a list"],
        ),
        # loco-eval
        Case(
            ev,
            "--predictions not JSON",
            ["--annotations", "gt.json", "--predictions", "not.json"],
            2,
            ["not.json"],
        ),
        Case(
            ev,
            "--annotations missing",
            ["--annotations", "nope.json", "--predictions", "pred_ok.json"],
            2,
            ["nope.json"],
        ),
        Case(
            ev,
            "a segment that ends before it starts",
            ["--annotations", "gt.json", "--predictions", "pred_reversed.json"],
            2,
            ["segment"],
        ),
        Case(
            ev,
            "a score that is a string",
            ["--annotations", "gt.json", "--predictions", "pred_score_str.json"],
            2,
            ["score"],
        ),
        Case(
            ev,
            "a score that is NaN",
            ["--annotations", "gt.json", "--predictions", "pred_score_nan.json"],
            2,
            ["score"],
        ),
        Case(
            ev,
            "a segment before 0 s",
            ["--annotations", "gt.json", "--predictions", "pred_negative.json"],
            2,
            ["before 0"],
        ),
        Case(
            ev,
            "a label not in the ground truth",
            ["--annotations", "gt.json", "--predictions", "pred_unknown_label.json"],
            0,
            ["ignored 1 predictions"],
        ),
        Case(
            ev,
            "a prediction without a segment",
            ["--annotations", "gt.json", "--predictions", "pred_no_segment.json"],
            2,
            ["segment"],
        ),
        Case(
            ev,
            "a results file without a prediction",
            ["--annotations", "gt.json", "--predictions", "pred_empty.json"],
            2,
            ["no predictions"],
        ),
        Case(
            ev,
            "`results` a list",
            ["--annotations", "gt.json", "--predictions", "pred_list.json"],
            2,
            ["results"],
        ),
        Case(
            ev,
            "ground-truth segments as strings",
            ["--annotations", "gt_str.json", "--predictions", "pred_ok.json"],
            2,
            ["segment"],
        ),
        Case(
            ev,
            "--split that no video has",
            [
                "--annotations",
                "gt.json",
                "--predictions",
                "pred_ok.json",
                "--split",
                "nope",
            ],
            2,
            ["nope"],
        ),
        # loco-synth
        Case(synth, "--videos 0", ["--out", "s", "--videos", "0"], 2, ["--videos"]),
        Case(
            synth,
            "--workers 0",
            ["--out", "s", "--videos", "1", "--workers", "0"],
            2,
            ["--workers"],
        ),
        Case(
            synth,
            "--duration 0",
            ["--out", "s", "--videos", "1", "--duration", "0"],
            2,
            ["--duration"],
        ),
        Case(synth, "--seed -1", ["--out", "s", "--videos", "1", "--seed", "-1"], 2, ["--seed"]),
        Case(
            synth, "--split a/b", ["--out", "s", "--videos", "1", "--split", "a/b"], 2, ["--split"]
        ),
        Case(
            synth,
            "--out is a file",
            ["--out", "not.json", "--videos", "1", "--duration", "1"],
            2,
            ["not.json"],
        ),
        Case(
            synth,
            "an invalid annotations.json in --out",
            ["--out", "synth_bad", "--videos", "1", "--duration", "1"],
            2,
            ["annotations.json"],
        ),
        # loco-train
        Case(
            train,
            "`model.embed_dim=10**12`",
            [*train_base, "model.embed_dim=1000000000000"],
            2,
            ["model.embed_dim must be at most"],
        ),
        Case(
            train,
            "`model.num_heads=0`",
            [*train_base, "model.num_heads=0"],
            2,
            ["model.num_heads must be at least 1"],
        ),
        Case(
            train,
            "`train.batch_size=0`",
            [*train_base, "train.batch_size=0"],
            2,
            ["train.batch_size"],
        ),
        Case(train, "`train.lr=fast`", [*train_base, "train.lr=fast"], 2, ["train.lr"]),
        Case(
            train,
            "`decode.max_segments=-1`",
            [*train_base, "decode.max_segments=-1"],
            2,
            ["decode.max_segments"],
        ),
        Case(
            train,
            "--config with a Python YAML tag",
            [*train_base, "--config", "config_tag.yaml"],
            2,
            ["config_tag"],
        ),
        Case(
            train,
            "--config with an unknown key",
            [*train_base, "--config", "config_key.yaml"],
            2,
            ["embed_dims"],
        ),
        Case(train, "--config missing", [*train_base, "--config", "nope.yaml"], 2, ["nope.yaml"]),
        Case(train, "--epochs 0", [*train_base, "--epochs", "0"], 2, ["--epochs"]),
        Case(train, "--workers 0", [*train_base, "--workers", "0"], 2, ["--workers"]),
        Case(
            train,
            "--extractor-clips -5",
            [*train_base, "--extractor-clips", "-5"],
            2,
            ["--extractor-clips"],
        ),
        Case(
            train, "--videos a file", ["--videos", "not.json", *train_base[2:]], 2, ["not a folder"]
        ),
        Case(
            train,
            "--annotations missing",
            ["--videos", "videos", "--annotations", "nope.json", "--out", "m"],
            2,
            ["nope.json"],
        ),
        Case(
            train,
            "--help without torch (runtime-only install)",
            NO_TORCH + "sys.argv = ['loco-train', '--help']; runpy.run_module('train.pipeline', "
            "run_name='__main__')",
            2,
            ["pip install 'loco-stream[train]'"],
        ),
        # python -m export
        Case(
            export,
            "without torch (runtime-only install)",
            NO_TORCH + "sys.argv = ['export', '--out', 'x']; runpy.run_module('export', "
            "run_name='__main__')",
            2,
            ["pip install 'loco-stream[train]'"],
        ),
        Case(
            export,
            "--out a folder holding a model of other weights",
            ["--checkpoint", "loco.pt", "--out", "models/other_weights"],
            2,
            ["--force"],
            lambda w, o: "0" * 64 in (w / "models/other_weights/model_card.json").read_text(),
        ),
        Case(
            export,
            "--out a file",
            ["--checkpoint", "loco.pt", "--out", "not.json"],
            2,
            ["not a directory"],
        ),
        Case(
            export,
            "--checkpoint missing",
            ["--checkpoint", "nope.pt", "--out", "e"],
            2,
            ["nope.pt"],
        ),
        Case(
            export,
            "--checkpoint a text file",
            ["--checkpoint", "not.json", "--out", "e"],
            2,
            ["not.json"],
        ),
        Case(
            export,
            "--int8 without --calib",
            ["--checkpoint", "loco.pt", "--out", "e", "--int8"],
            2,
            ["--calib"],
        ),
        Case(
            export,
            "--window 0",
            ["--checkpoint", "loco.pt", "--out", "e", "--window", "0"],
            2,
            ["window"],
        ),
        Case(
            export, "--hop 0", ["--checkpoint", "loco.pt", "--out", "e", "--hop", "0"], 2, ["hop"]
        ),
        Case(
            "export/to_trt.py",
            "--model a missing folder",
            "import sys, runpy; sys.argv = "
            "['to_trt.py', '--model', 'nope']; runpy.run_path('TREE/export/to_trt.py', "
            "run_name='__main__')",
            (1, 2),
            ["nope"],
        ),
        # Detector
        Case(
            api,
            "Detector: an on_event that raises once",
            """
calls = []
def on_event(event):
    calls.append(event)
    if len(calls) == 2:
        raise RuntimeError("a bug in the caller")
d = Detector(on_event=on_event)
feed(d.push_frame, d.push_audio)
d.close()
print("events delivered", len(calls))
""",
            0,
            ["a bug in the caller", "events delivered 4"],
        ),
        Case(
            api,
            "Detector: sample_rate=16000.0",
            """
d = Detector()
refused(lambda: feed(d.push_frame, d.push_audio, rate=16000.0))
""",
            0,
            ["accepted"],
        ),
        Case(
            api,
            "Detector: audio blocks pushed out of order",
            """
import random
d = Detector()
audio = [i for i in ITEMS if not isinstance(i, VideoFrame)]
random.Random(0).shuffle(audio)
refused(lambda: [d.push_audio(b.samples, b.t) for b in audio])
print("regressions", d.stats.clock_regressions)
""",
            0,
            ["accepted", "went backwards"],
        ),
        Case(
            api,
            "Detector: threads=0",
            "refused(lambda: Detector(threads=0))",
            0,
            ["Error: threads must be at least 1"],
        ),
        Case(
            api,
            "Detector: threads=10**6",
            "refused(lambda: Detector(threads=10**6))",
            0,
            ["Error: threads must be at most"],
        ),
        Case(
            api,
            "Detector: threshold=1.5",
            "refused(lambda: Detector(threshold=1.5))",
            0,
            ["ValueError: threshold"],
        ),
        Case(api, "Detector: hop=0", "refused(lambda: Detector(hop=0))", 0, ["ValueError"]),
        Case(
            api,
            'Detector: model card `classes: "abc"`',
            "refused(lambda: Detector('models/classes_str'))",
            0,
            ["classes must be a list"],
        ),
        Case(
            api,
            "Detector: NaN audio",
            "d = Detector(); refused(lambda: d.push_audio(np.full(4000, np.nan), 0.0))",
            0,
            ["ValueError: audio holds"],
        ),
        Case(
            api,
            "Detector: (2, N) audio",
            "d = Detector(); refused(lambda: d.push_audio(np.zeros((2, 4000)), 0.0))",
            0,
            ["ValueError", "channels"],
        ),
        Case(
            api,
            "Detector: a float frame",
            "d = Detector(); refused(lambda: d.push_frame(np.zeros((96, 96, 3)), 0.0))",
            0,
            ["ValueError: a frame must be"],
        ),
        Case(
            api,
            "Detector: time 'abc'",
            "d = Detector(); refused(lambda: d.push_frame(np.zeros((9, 9, 3), np.uint8), 'abc'))",
            0,
            ["ValueError: a time must be"],
        ),
        Case(
            api,
            "Detector: sample_rate=0",
            "d = Detector(); refused(lambda: d.push_audio(np.zeros(400), 0.0, 0))",
            0,
            ["ValueError: sample_rate"],
        ),
        Case(
            api,
            "Detector: sample_rate='16k'",
            "d = Detector(); refused(lambda: d.push_audio(np.zeros(400), 0.0, '16k'))",
            0,
            ["ValueError: sample_rate"],
        ),
        Case(
            api,
            "Detector: a push after close()",
            """
d = Detector(); d.close()
refused(lambda: d.push_audio(np.zeros(400), 0.0))
""",
            0,
            ["RuntimeError: the detector is closed"],
        ),
        # MultiDetector
        Case(
            api,
            "MultiDetector: an on_event that raises for one stream",
            """
calls = {"a": 0, "b": 0}
def on_event(item):
    calls[item.stream] += 1
    if item.stream == "a":
        raise RuntimeError("a bug in the caller")
m = MultiDetector(on_event=on_event)
m.add_stream("a"); m.add_stream("b")
for item in ITEMS:
    for name in ("a", "b"):
        if isinstance(item, VideoFrame):
            m.push_frame(name, item.image, item.t)
        else:
            m.push_audio(name, item.samples, item.t)
refused(m.close)
print("delivered", calls, "failed", m.callback_errors)
""",
            0,
            ["accepted", "delivered {'a': 4, 'b': 4}"],
        ),
        Case(
            api,
            "MultiDetector: a stream name with a slash",
            "m = MultiDetector(); refused(lambda: m.add_stream('a/b'))",
            0,
            ["ValueError"],
        ),
        Case(
            api,
            "MultiDetector: a push to a stream never added",
            "m = MultiDetector(); refused(lambda: m.push_audio('x', np.zeros(400), 0.0))",
            0,
            ["ValueError: no open stream"],
        ),
        Case(
            api,
            "MultiDetector: threshold=-1",
            "m = MultiDetector(); refused(lambda: m.add_stream('a', threshold=-1))",
            0,
            ["ValueError: threshold"],
        ),
        Case(
            api,
            "MultiDetector: threads=0",
            "refused(lambda: MultiDetector(threads=0))",
            0,
            ["Error: threads must be at least 1"],
        ),
        Case(
            api,
            "JsonlWriter: a write on a full disk (/dev/full-like os.write)",
            """
import errno, os
from loco_stream.stream import output
writer = output.JsonlWriter("w.jsonl")
writer.write({"a": 1})
real = os.write
def full(fd, data):
    real(fd, bytes(data[:5]))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
output.os.write = full
refused(lambda: writer.write({"b": 2}))
output.os.write = real
writer.close()
print(repr(open("w.jsonl").read()))
""",
            0,
            ["No space left on device", "'{\"a\": 1}\\n'"],
        ),
    ]


def run_case(number: int, case: Case, tree: Path, work: Path) -> Answer:
    """Run case ``number`` on the source ``tree`` in ``work``; its answer. Its ``r.json`` is
    its own (``r<number>.json``): cases run side by side."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "default"}
    if isinstance(case.args, str):
        code = case.args.replace("TREE", str(tree))
        if case.where == "API":
            code = API_PREAMBLE + textwrap.dedent(code)
        command = [sys.executable, "-c", code]
    else:
        args = [f"r{number}.json" if arg == "r.json" else arg for arg in case.args]
        command = [sys.executable, "-m", MODULES[case.where], *args]
    try:
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Answer(False, f"still running after {TIMEOUT_S} s")
    out = done.stdout + done.stderr
    statuses = case.status if isinstance(case.status, tuple) else (case.status,)
    clear = (
        done.returncode in statuses
        and "Traceback" not in out
        and all(word in out for word in case.says)
        and (case.check is None or _checked(case.check, work, out))
    )
    return Answer(clear, f"exit {done.returncode}: {_gist(done, case)}")


def _checked(check: Callable[[Path, str], bool], work: Path, out: str) -> bool:
    try:
        return bool(check(work, out))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _gist(done: subprocess.CompletedProcess, case: Case) -> str:
    """The line that says the most: the traceback's last, an error line, or the last line."""
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return "traceback: " + lines[-1]
    for word in [*case.says, "error", "warning", "Error"]:
        found = [line for line in lines if word in line]
        if found:
            extra = f" (x{len(found)})" if len(found) > 1 and word in case.says else ""
            return found[0] + extra
    return lines[-1] if lines else "(no output)"


def table(rows: list[tuple[Case, Answer | None, Answer]]) -> str:
    def cell(answer: Answer | None) -> str:
        if answer is None:
            return ""
        text = answer.summary.replace("|", "\\|").replace("\n", " ")
        text = text if len(text) <= 160 else text[:157] + "..."
        return ("ok " if answer.clear else "**NO** ") + text

    before = any(row[1] is not None for row in rows)
    head = "| # | where | bad input | " + ("before | after |" if before else "answer |")
    lines = [head, "|---|---|---|" + ("---|---|" if before else "---|")]
    for number, (case, old, new) in enumerate(rows, 1):
        what = case.what.replace("|", "\\|")
        cells = [cell(old), cell(new)] if before else [cell(new)]
        lines.append(f"| {number} | {case.where} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another source tree to run every case on")
    parser.add_argument("--only", help="cases whose entry point or input holds this text")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (2)")
    args = parser.parse_args()
    chosen = [c for c in cases() if not args.only or args.only in f"{c.where} {c.what}"]
    trees = [args.before, ROOT] if args.before else [ROOT]
    answers: dict[Path, list[Answer]] = {}
    for tree in trees:  # each on fresh files (a case may change them)
        work = Path(tempfile.mkdtemp(prefix="sweep_bad_inputs."))
        try:
            tmpfs = make_scratch(work)
            chosen = [c for c in chosen if c.needs != "tmpfs" or tmpfs]
            with ThreadPoolExecutor(args.jobs) as pool:
                count = len(chosen)
                numbers, trees_, works = range(count), [tree] * count, [work] * count
                answers[tree] = list(pool.map(run_case, numbers, chosen, trees_, works))
        finally:
            unmount(work)
            shutil.rmtree(work, ignore_errors=True)
    olds = answers[args.before] if args.before else [None] * len(chosen)
    print(table(list(zip(chosen, olds, answers[ROOT], strict=True))))
    print()
    for tree in trees:
        clear = sum(answer.clear for answer in answers[tree])
        print(f"{tree}: {len(chosen)} cases, {clear} clear, {len(chosen) - clear} not")
    return 0


if __name__ == "__main__":
    sys.exit(main())
