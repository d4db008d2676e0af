"""INT8 (Q/DQ) against fp32 window graphs on the CPU: accuracy on a labelled split, window latency.

    python benchmarks/bench_int8.py --model DIR --data DIR [--split test] [--threads 1 2]
                                    [--runs 30]

DIR (``--model``) is a model directory written by ``python -m export --int8 --calib VIDEOS``: it
holds ``loco.onnx`` and ``loco_int8.onnx``. ``--data`` is a folder written by ``loco-synth`` (or
any UnAV-style ``annotations.json`` with ``videos/<id>.mp4``). Every clip of ``--split`` is
detected offline (as ``loco-detect`` does) with each window graph and scored with the reference
evaluator; then each graph is timed on the split's own feature windows (median of ``--runs``
runs after 5 warm-up runs, ONNX Runtime CPU with each ``--threads`` count). Prints a markdown
table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_model import machine_line, median_ms
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from export.quantize import feature_windows  # noqa: E402
from loco_stream.evaluation import evaluate, load_ground_truth, load_predictions  # noqa: E402
from loco_stream.features.media import extract_file  # noqa: E402
from loco_stream.model_dir import ModelDir  # noqa: E402
from loco_stream.offline import detect_clip  # noqa: E402

PRECISIONS = ("fp32", "int8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model dir with loco_int8.onnx")
    parser.add_argument("--data", type=Path, required=True, help="annotations.json + videos/")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)

    truth = load_ground_truth(args.data / "annotations.json", args.split)
    videos = [args.data / "videos" / f"{vid}.mp4" for vid in sorted(truth)]
    rows = []
    windows = []
    for precision in PRECISIONS:
        with ModelDir(args.model, threads=args.threads[-1], precision=precision) as model:
            results = {}
            for path in tqdm(videos, desc=f"detect ({precision})", unit="clip"):
                results[path.stem], _ = detect_clip(model, path)
                if precision == PRECISIONS[0]:
                    visual, audio = extract_file(path, model.spec, model.step_features)
                    windows += feature_windows(visual, audio, model.info.window)
        score = evaluate(truth, load_predictions({"results": results}))
        rows.append([precision, f"{score.average:.2f}", f"{score.mAP[4]:.2f}"])

    for row, precision in zip(rows, PRECISIONS, strict=True):
        for threads in args.threads:
            with ModelDir(args.model, threads=threads, precision=precision) as model:
                feeds = iter(windows * (args.runs // len(windows) + 2))

                def run(model: ModelDir = model, feeds=feeds) -> None:
                    window = next(feeds)
                    model.run_window(window["visual"], window["audio"], window["mask"])

                row.append(f"{median_ms(run, args.runs, warmup=5):.1f}")
    print(machine_line(max(args.threads)))
    print(
        f"{len(videos)} clips of split '{args.split}' in {args.data}, "
        f"{len(windows)} feature windows, model {args.model}\n"
    )
    timing = " | ".join(f"ms / window, {t} thread{'s' * (t > 1)}" for t in args.threads)
    print(f"| window graph | avg mAP | mAP@0.5 | {timing} |")
    print("|---" * (3 + len(args.threads)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
