"""Per-window latency of the LoCo window graph: torch eager against ONNX Runtime, CPU and GPU.

    python benchmarks/bench_runtime.py [--threads 2] [--runs 30] [--sizes edge paper] [--cuda]
                                       [--profile]

For the edge and paper sizes (LoCo variant, random weights, T=256, batch 1) the window graph is
exported by export/to_onnx.py into a temporary directory, then timed (median of ``--runs`` runs
after ``--warmup``): torch eager on the CPU and ONNX Runtime's CPU provider, both with
``--threads`` intra-op threads. With ``--cuda``: torch eager on the GPU, the same replayed as a
CUDA graph (``torch.cuda.graph``), and ONNX Runtime's CUDA provider (numpy in and out, so its time
includes the copies; it needs onnxruntime-gpu), all fp32 with TF32 off. Prints a markdown table,
a row per (size, backend), with the GFLOP/s achieved (FLOP as in bench_model.py) and the speed-up
over torch eager on the same device; CPU rows also give their share of the fp32 matmul ceiling
(torch.mm throughput on this machine, printed in the header). ``--profile`` adds, per size, ONNX
Runtime's CPU time by operator type (``SessionOptions.enable_profiling``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import onnxruntime as ort
import torch
from bench_model import (
    SIZES,
    count_gflop,
    machine_line,
    matmul_ceiling,
    median_ms,
    random_window,
    size_config,
    torch_eager_ms,
    window_graph,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `export` is a folder of scripts at the repository root
    sys.path.insert(0, str(ROOT))

from export.window_graph import export_window_graph  # noqa: E402
from loco_stream.config import Config  # noqa: E402
from loco_stream.runtime import BackendUnavailable  # noqa: E402
from loco_stream.runtime.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402

Row = tuple[str, str, float | None]  # backend, device, ms (None: unavailable)


def onnxruntime_ms(path: Path, feed: dict, accelerator: str, threads: int, runs: int, warmup: int):
    """Median latency of the graph in ONNX Runtime; raises BackendUnavailable."""
    with OnnxRuntimeBackend(path, accelerator, threads) as backend:
        return median_ms(lambda: backend.run(feed), runs, warmup), backend.device


def profile_by_op(path: Path, feed: dict, threads: int, runs: int) -> list[tuple[str, float, int]]:
    """ONNX Runtime CPU kernel time per window by operator type: (op, ms, nodes), largest first."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_name("profile"))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    total, nodes = defaultdict(float), defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            total[op] += event["dur"] / 1e3 / runs  # us -> ms per window
            nodes[op].add(event["name"])
    return sorted(((op, ms, len(nodes[op])) for op, ms in total.items()), key=lambda r: -r[1])


def cuda_rows(graph: torch.nn.Module, inputs: tuple, path: Path, feed: dict, args) -> list[Row]:
    """torch eager, torch CUDA graph and ONNX Runtime CUDA on the GPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    card = torch.cuda.get_device_name()
    graph = graph.cuda()
    inputs = tuple(t.cuda() for t in inputs)

    def eager() -> None:
        graph(*inputs)
        torch.cuda.synchronize()

    with torch.no_grad():
        rows: list[Row] = [("torch eager", card, median_ms(eager, args.runs, args.warmup))]
        side = torch.cuda.Stream()  # warm up on a side stream before capture, as torch asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                graph(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            graph(*inputs)

    def replay() -> None:
        captured.replay()
        torch.cuda.synchronize()

    rows.append(("torch CUDA graph", card, median_ms(replay, args.runs, args.warmup)))
    try:
        ms, device = onnxruntime_ms(path, feed, "cuda", args.threads, args.runs, args.warmup)
        rows.append(("ONNX Runtime CUDA", device, ms))
    except BackendUnavailable as err:
        print(f"ONNX Runtime CUDA unavailable: {str(err)[:300]}", file=sys.stderr)
        rows.append(("ONNX Runtime CUDA", "unavailable (onnxruntime-gpu missing)", None))
    return rows


def size_rows(
    size: str, out_dir: Path, ceiling: float, args: argparse.Namespace
) -> tuple[list[str], list]:
    """The table rows of one size, and ORT's profile by operator when ``--profile``."""
    config = size_config(size)
    graph, inputs = window_graph(config), random_window(config)
    gflop = count_gflop(graph, inputs)
    print(f"{size}: exporting the window graph ({gflop:.2f} GFLOP)", file=sys.stderr, flush=True)
    path = export_window_graph(graph.model, Config(model=config), [], out_dir, config.window)
    feed = dict(zip(("visual", "audio", "mask"), (t.numpy() for t in inputs), strict=True))
    print(f"{size}: timing", file=sys.stderr, flush=True)
    eager = torch_eager_ms(graph, inputs, args.runs, args.warmup)
    ms, device = onnxruntime_ms(path, feed, "cpu", args.threads, args.runs, args.warmup)
    groups = [
        [("torch eager", f"CPU ({args.threads} threads)", eager), ("ONNX Runtime", device, ms)]
    ]
    if args.cuda:
        groups.append(cuda_rows(graph, inputs, path, feed, args))
    rows = []
    for on_cpu, group in zip((True, False), groups, strict=False):
        baseline = group[0][2]  # torch eager on the same device
        for backend, device, ms in group:
            cells = ["n/a", "", "", ""]
            if ms is not None:
                rate = gflop / ms * 1e3
                share = f"{100 * rate / ceiling:.0f}%" if on_cpu else ""
                cells = [f"{ms:.2f}", f"{rate:.1f}", share, f"{baseline / ms:.2f}x"]
            rows.append(
                f"| {size} (D={config.embed_dim}) | {gflop:.2f} | {backend} | {device} | "
                + " | ".join(cells)
                + " |"
            )
    profile = profile_by_op(path, feed, args.threads, args.runs) if args.profile else []
    return rows, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU intra-op threads")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=["edge", "paper"])
    parser.add_argument("--cuda", action="store_true", help="add torch CUDA and ORT CUDA rows")
    parser.add_argument("--profile", action="store_true", help="ORT CPU time by operator")
    args = parser.parse_args()
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda: torch sees no CUDA GPU on this machine")
    torch.set_num_threads(args.threads)

    ceiling = matmul_ceiling()
    table = ["| size | GFLOP | backend | device | ms / window | GFLOP/s | of ceiling | speed-up |"]
    table.append("|---|---:|---|---|---:|---:|---:|---:|")
    profiles = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            rows, profiles[size] = size_rows(size, Path(tmp) / size, ceiling, args)
            table += rows
    print(machine_line(args.threads) + f"; onnxruntime {ort.__version__}\n")
    print("\n".join(table))
    for size, ops in profiles.items():
        if not ops:
            continue
        total = sum(ms for _, ms, _ in ops)
        print(f"\nONNX Runtime CPU kernel time by operator, {size} size ({total:.1f} ms / window):")
        print("| op | nodes | ms / window | share |\n|---|---:|---:|---:|")
        for op, ms, count in ops[:12]:
            print(f"| {op} | {count} | {ms:.2f} | {100 * ms / total:.1f}% |")


if __name__ == "__main__":
    main()
