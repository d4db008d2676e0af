"""Size and cost of each LoCo variant at the paper and edge sizes: parameters, GFLOP, latency.

    python benchmarks/bench_model.py [--threads 2] [--runs 20] [--sizes paper edge]

Prints a markdown table, a row per (size, variant): parameters, GFLOP per window, and torch eager
latency of one window (batch 1, ``--threads`` intra-op threads, median of ``--runs`` runs after
``--warmup`` runs) with the GFLOP/s it achieves. The paper size is configs/unav100_loco.yaml's
network, the edge size configs/edge.yaml's (the default model), both at T=256; weights are random
(latency and FLOP do not depend on them).

GFLOP are counted by ``torch.utils.flop_counter.FlopCounterMode``: matrix products and
convolutions, 2 FLOP per multiply-add; elementwise ops, softmax and norms are not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from loco_stream.config import VARIANTS, ModelConfig, load_config
from loco_stream.model import LoCo, WindowGraph

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 256
# configs/edge.yaml's network, for a checkout that lacks the file
EDGE_FALLBACK = ModelConfig(
    visual_dim=128,
    audio_dim=128,
    num_classes=16,
    window=WINDOW,
    embed_dim=128,
    head_dim=128,
    num_heads=4,
    num_levels=6,
)
SIZES = ("paper", "edge")


def size_config(size: str, variant: str = "loco") -> ModelConfig:
    """The ``paper`` or ``edge`` network as ``variant``, at T=256."""
    if size == "paper":
        config = load_config(ROOT / "configs" / "unav100_loco.yaml").model
    else:
        edge = ROOT / "configs" / "edge.yaml"
        config = load_config(edge).model if edge.is_file() else EDGE_FALLBACK
    return dataclasses.replace(config, variant=variant, window=WINDOW)


def random_window(config: ModelConfig, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """visual (1, T, Dv), audio (1, T, Da), mask (1, T) of ones."""
    torch.manual_seed(0)
    return (
        torch.randn(1, config.window, config.visual_dim, device=device),
        torch.randn(1, config.window, config.audio_dim, device=device),
        torch.ones(1, config.window, device=device),
    )


def window_graph(config: ModelConfig) -> WindowGraph:
    """The served graph of a randomly initialised network, in eval mode."""
    torch.manual_seed(0)
    return WindowGraph(LoCo(config)).eval()


def count_gflop(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """GFLOP of one forward pass (matrix products and convolutions)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(*inputs)
    return counter.get_total_flops() / 1e9


def median_ms(run: Callable[[], object], runs: int, warmup: int) -> float:
    """Median wall time of ``run()`` in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def torch_eager_ms(module: torch.nn.Module, inputs: tuple, runs: int, warmup: int) -> float:
    """Median latency of ``module(*inputs)`` in torch eager, inference mode."""
    with torch.inference_mode():
        return median_ms(lambda: module(*inputs), runs, warmup)


def matmul_ceiling(size: int = 1024, runs: int = 20) -> float:
    """fp32 GFLOP/s of torch.mm on (size, size) matrices with torch's current thread count: the
    machine's practical ceiling, against which each latency's GFLOP/s is read."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_ms(lambda: torch.mm(a, b), runs, warmup=3) / 1e6


def machine_line(threads: int) -> str:
    """Which CPU, how many threads, and how busy the machine was (timings vary with load)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} usable logical CPUs, {threads} threads, "
        f"load average {load}; torch {torch.__version__}; fp32 matmul ceiling "
        f"{matmul_ceiling():.0f} GFLOP/s (torch.mm, 1024 x 1024)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(machine_line(args.threads) + "\n")
    print("| size | variant | params (M) | GFLOP / window | torch eager (ms) | GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|")
    for size in args.sizes:
        for variant in args.variants:
            config = size_config(size, variant)
            graph, inputs = window_graph(config), random_window(config)
            params = sum(p.numel() for p in graph.parameters()) / 1e6
            gflop = count_gflop(graph, inputs)
            ms = torch_eager_ms(graph, inputs, args.runs, args.warmup)
            print(
                f"| {size} (D={config.embed_dim}, T={config.window}) | {variant} | {params:.1f} "
                f"| {gflop:.2f} | {ms:.1f} | {gflop / ms * 1e3:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
