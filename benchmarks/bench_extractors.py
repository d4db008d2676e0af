"""Cost of the per-step extractors per second of media, and the stream end to end on them.

    python benchmarks/bench_extractors.py [--threads 2] [--repeats 30] [--videos data/synth/videos]
        [--clips 3] [--skip-stream] [--skip-extractors] [--model DIR|NAME]

1. Each extractor network, exported to ONNX as the sets export it and run by ONNX Runtime on
   ``--threads`` threads, one step at a time as the stream runs it: the median time of one step,
   its cost per second of media (steps per second x time per step) and the real-time factor
   (compute seconds per media second). VGGish runs with random weights (its cost does not depend
   on them; the checkpoint is a download).
2. The stream end to end (``loco-stream --input`` as fast as possible: decoding, resampling, step
   assembly, extraction, the window graph every hop, decoding, stitching) on ``--clips`` videos of
   ``--videos`` with a model directory on the ``efficientnet-logmel`` set: an untrained edge LoCo
   of ``configs/edge_efficientnet_logmel.yaml`` (its cost does not depend on its weights) exported
   with ``python -m export``, or ``--model`` (a model directory or a packaged model's name, e.g.
   ``efficientnet``). Real-time factor = compute seconds / media seconds (target <= 0.10).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.__main__ import main as export_main  # noqa: E402
from export.graphs import export_graph  # noqa: E402
from loco_stream.config import load_config  # noqa: E402
from loco_stream.features.efficientnet_lite import (  # noqa: E402
    VisualBackbone,
    pretrained_efficientnet_lite0,
)
from loco_stream.features.map_head import untrained_visual_map_head  # noqa: E402
from loco_stream.features.steps import StepSpec  # noqa: E402
from loco_stream.features.vggish import EXAMPLE_SECONDS, AudioVGGish, VGGish  # noqa: E402
from loco_stream.model import LoCo  # noqa: E402
from loco_stream.model.checkpoint import save_checkpoint  # noqa: E402
from loco_stream.model_dir import ModelDir  # noqa: E402
from loco_stream.runtime import open_backend  # noqa: E402
from loco_stream.sources import FileSource  # noqa: E402
from loco_stream.stream.engine import StreamEngine  # noqa: E402
from train.extractor_sets import (  # noqa: E402
    SETS,
    PretrainedFiles,
    shipped_log_mel_cnn,
    write_extractor_set,
)


@dataclass
class Case:
    """One extractor network at one step timing."""

    name: str
    network: nn.Module
    spec: StepSpec
    modality: str  # "audio" or "visual"


def cases() -> list[Case]:
    efficientnet = VisualBackbone(pretrained_efficientnet_lite0())
    synthetic = SETS["synthetic"].build(PretrainedFiles())
    log_mel_cnn, _ = shipped_log_mel_cnn()
    vggish = AudioVGGish(VGGish().eval())

    def spec(step: float, frames: int = 1, size: int = 224, audio: float | None = None):
        return StepSpec(step, 16000, frames, size, audio, None)

    rows = [
        Case("synthetic CNN, 4 frames 96x96", synthetic["visual"][0], spec(0.25, 4, 96), "visual"),
        Case("log-mel CNN, 0.25-s window", log_mel_cnn, spec(0.25), "audio"),
        Case("log-mel CNN, 0.96-s window", log_mel_cnn, spec(0.25, audio=0.96), "audio"),
        Case("VGGish, 0.975-s window", vggish, spec(0.25, audio=EXAMPLE_SECONDS), "audio"),
        Case("VGGish, 0.32-s hop", vggish, spec(0.32, audio=EXAMPLE_SECONDS), "audio"),
    ]
    for frames, size in ((1, 224), (1, 192), (1, 160), (2, 160), (4, 224)):
        name = f"EfficientNet-Lite0, {frames} frame(s) {size}x{size}"
        rows.append(Case(name, efficientnet, spec(0.25, frames, size), "visual"))
    rows.append(
        Case("EfficientNet-Lite0, 1 frame 224, 0.32-s hop", efficientnet, spec(0.32), "visual")
    )
    stage5 = untrained_visual_map_head(efficientnet.network)  # the EfficientNet sets' visual side
    for size in (224, 160):
        name = f"Lite0 to stage 5 + head, 1 frame {size}x{size}"
        rows.append(Case(name, stage5, spec(0.25, 1, size), "visual"))
    return rows


def step_input(case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    spec = case.spec
    if case.modality == "audio":
        return {"waveform": (0.3 * rng.standard_normal((1, spec.samples_per_window))).astype("f4")}
    shape = (1, spec.frames_per_step, spec.frame_size, spec.frame_size, 3)
    return {"frames": rng.integers(0, 256, shape, dtype=np.uint8)}


def time_case(case: Case, folder: Path, threads: int, repeats: int) -> float:
    """Median seconds of one step in ONNX Runtime."""
    inputs = step_input(case)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        path = export_graph(case.network.eval(), inputs, ["features"], folder / "graph.onnx", {})
    graph = open_backend("onnxruntime", path, threads)
    for _ in range(3):
        graph.run(inputs)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        graph.run(inputs)
        times.append(time.perf_counter() - began)
    graph.close()
    return float(np.median(times))


def stream_model_dir(folder: Path) -> Path:
    """An untrained edge LoCo on the efficientnet-logmel set, as a model directory."""
    write_extractor_set("efficientnet-logmel", folder / "set")
    config = load_config(ROOT / "configs" / "edge_efficientnet_logmel.yaml")
    model = LoCo(config.model).eval()
    names = [f"class {i}" for i in range(config.model.num_classes)]
    checkpoint = folder / "loco.pt"
    state = {"model": model.state_dict(), "config": config.to_dict(), "class_names": names}
    save_checkpoint(checkpoint, state)
    out = folder / "model"
    arguments = [
        "--checkpoint",
        str(checkpoint),
        "--extractors",
        str(folder / "set" / "extractors.pt"),
    ]
    report = io.StringIO()
    with contextlib.redirect_stdout(report), contextlib.redirect_stderr(report):
        status = export_main([*arguments, "--out", str(out)])
    if status != 0:
        raise SystemExit(f"python -m export failed:\n{report.getvalue()}")
    return out


def stream_real_time_factor(model_dir: Path, videos: list[Path], threads: int) -> tuple:
    """(media seconds, compute seconds, wall seconds) of streaming ``videos`` one after another."""
    model = ModelDir(model_dir, threads=threads)
    media = compute = wall = 0.0
    for video in videos:
        engine = StreamEngine(model)
        with FileSource(video) as source:
            stats = engine.run(source, lambda event: None)
        media += stats.media_seconds
        compute += stats.compute_seconds
        wall += stats.wall_seconds
    model.close()
    return media, compute, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--videos", type=Path, default=ROOT / "data" / "synth" / "videos")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--skip-extractors", action="store_true", help="the stream part only")
    parser.add_argument("--model", help="stream this model directory (default: an untrained one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # exporter chatter; small synthetic frames are enlarged
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        print(f"extractors, ONNX Runtime on {args.threads} threads, one step at a time")
        print(f"{'extractor':48} {'hop s':>6} {'ms/step':>8} {'ms/s media':>11} {'RTF':>7}")
        for case in [] if args.skip_extractors else cases():
            seconds = time_case(case, folder, args.threads, args.repeats)
            per_media_second = seconds / case.spec.step_seconds
            print(
                f"{case.name:48} {case.spec.step_seconds:6.2f} {1000 * seconds:8.2f} "
                f"{1000 * per_media_second:11.1f} {per_media_second:7.3f}"
            )
        if args.skip_stream:
            return 0
        videos = sorted(args.videos.glob("*.mp4"))[: args.clips]
        if not videos:
            print(f"no .mp4 videos in {args.videos}: stream part skipped", file=sys.stderr)
            return 1
        model_dir = args.model or stream_model_dir(folder)
        media, compute, wall = stream_real_time_factor(model_dir, videos, args.threads)
        what = args.model or (
            "an untrained edge LoCo on efficientnet-logmel (1 frame 224x224 a 0.25-s step, "
            "log-mel CNN over 0.96 s)"
        )
        print(
            f"\nstream end to end, {what}, {len(videos)} clips, {media:.1f} s of media: "
            f"real-time factor {compute / media:.3f} (compute), {wall / media:.3f} (wall)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
