"""Where EfficientNet-Lite0's visual features lose the classes: pooling, stages, colour (issue 23).

    python benchmarks/probe_visual_pooling.py [--data data/held] [--train-clips 60]
        [--test-clips 20] [--cache data/probe_pooling] [--threads 2] [--variants ...]

For each step of the first ``--train-clips`` train and ``--test-clips`` test clips (sorted ids),
the frame the ``efficientnet-logmel`` set sees (one frame at the step's middle, 224x224, through
``file_steps`` with the set's ``StepSpec``) goes through EfficientNet-Lite0 (ImageNet weights,
frozen). Its last feature map (1280 x 7 x 7, the one ``embed`` pools) is pooled several ways:

- ``global``: the global average pool, 1280-d: what the set ships;
- ``grid2``: average pool over a 2x2 grid of the map, 5120-d (keeps coarse position);
- ``global+motion``: ``global`` and the global pool of |map(this step) - map(previous step)|,
  2560-d (the previous step's middle frame is 0.25 s earlier; step 0 has zero motion);
- ``grid3``: a 3x3 grid, 11520-d;
- ``max``: the global max pool, 1280-d (a small shape anywhere counts as much as a large one),
  and ``global+max``;
- ``stageN avg+max``: average and max pools of an earlier stage's output (stage 4: 80 x 14 x 14,
  stage 5: 112 x 14 x 14, stage 7: 320 x 7 x 7), whose features are less invariant to colour
  and small detail than the last map's, and ``max+stage5 max``;
- ``colour``: no network, a 512-bin RGB histogram of the frame (log counts), and
  ``global+colour``: whether colour, which ImageNet training teaches the network to discount, is
  what is missing.

A reference row probes the `synthetic` set's visual features of the same clips (the small CNN
trained on these classes, ``--reference``, the files ``loco-train`` or ``python -m
train.extract_features --extractors synthetic`` writes).

Each variant gets the feature check's linear probe (``train.feature_check.check_modality``: a
balanced logistic regression on standardised features, step -> event class or background,
steps inside two classes left out, macro-F1 on the test clips; chance = the same probe on
shuffled labels). Pooled features are cached per clip under ``--cache`` so that a rerun only
fits the probes. Prints a markdown table; ``--errors`` adds where the ``global`` probe goes wrong
(event steps called background, background steps called an event, of those the ones with an
event's shape on screen but silent, which the annotations' ``visible`` list gives, and one class
taken for another).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.probe_trained_head import on_screen as classes_on_screen  # noqa: E402
from loco_stream.features.efficientnet_lite import (  # noqa: E402
    normalise,
    pretrained_efficientnet_lite0,
)
from loco_stream.features.media import file_steps  # noqa: E402
from train.data import VideoRecord, load_records  # noqa: E402
from train.extractor_sets import SETS  # noqa: E402
from train.feature_check import MULTIPLE, check_modality, step_labels  # noqa: E402

NUM_CLASSES = 16
BATCH = 32  # frames per forward pass
# variant -> the cached pools it concatenates
VARIANTS = {
    "global": ("global",),
    "grid2": ("grid2",),
    "global+motion": ("global", "motion"),
    "grid3": ("grid3",),
    "max": ("max",),
    "global+max": ("global", "max"),
    "stage4 avg+max": ("stage4_avg", "stage4_max"),
    "stage5 avg+max": ("stage5_avg", "stage5_max"),
    "stage7 avg+max": ("stage7_avg", "stage7_max"),
    "max+stage5 max": ("max", "stage5_max"),
    "colour": ("colour",),
    "global+colour": ("global", "colour"),
}
POOLS = sorted({pool for pools in VARIANTS.values() for pool in pools})  # cached per step
# stage -> index of its last block in ``_blocks`` (stages of 1, 2, 2, 3, 3, 4, 1 blocks)
STAGE_OUTPUTS = {"stage4": 7, "stage5": 10, "stage7": 15}  # 80 x 14^2, 112 x 14^2, 320 x 7^2
REFERENCE = "synthetic set's visual CNN (trained on these classes)"
COLOUR_LEVELS = 8  # per channel: the colour histogram has 8^3 bins


class FeatureMaps:
    """EfficientNet-Lite0 whose ``embed`` also leaves its last feature map (before pooling)
    and the outputs of some earlier stages."""

    def __init__(self) -> None:
        self.network = pretrained_efficientnet_lite0()
        self._map: torch.Tensor | None = None
        self.stages: dict[str, torch.Tensor] = {}
        # embed applies relu6 to _bn1's output and averages it: keep that map
        self.network._bn1.register_forward_hook(self._keep)
        for stage, block in STAGE_OUTPUTS.items():
            self.network._blocks[block].register_forward_hook(self._keeper(stage))

    def _keep(self, module, inputs, output) -> None:
        self._map = functional.relu6(output)

    def _keeper(self, stage: str):
        def keep(module, inputs, output) -> None:
            self.stages[stage] = output

        return keep

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) uint8 -> the pooled embedding (N, 1280) and the map (N, 1280, h, w)."""
        pooled = self.network.embed(normalise(torch.from_numpy(frames)))
        return pooled, self._map


def pool_clip(maps: torch.Tensor, stages: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """(T, C, h, w) feature maps of a clip's steps (and of earlier stages) -> each pool, (T, D)."""
    previous = torch.cat([maps[:1], maps[:-1]])  # step 0: its own map (zero motion)
    pools = {
        "global": maps.mean(dim=(2, 3)),
        "grid2": functional.adaptive_avg_pool2d(maps, 2).flatten(1),
        "grid3": functional.adaptive_avg_pool2d(maps, 3).flatten(1),
        "motion": (maps - previous).abs().mean(dim=(2, 3)),
        "max": maps.amax(dim=(2, 3)),
    }
    for stage, output in stages.items():
        pools[f"{stage}_avg"] = output.mean(dim=(2, 3))
        pools[f"{stage}_max"] = output.amax(dim=(2, 3))
    return {name: value.numpy().astype(np.float16) for name, value in pools.items()}


def colour_histogram(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, 512) log(1 + pixel count) per RGB bin: colour without a network."""
    levels = frames.astype(np.int32) // (256 // COLOUR_LEVELS)  # (T, H, W, 3)
    bins = (levels[..., 0] * COLOUR_LEVELS + levels[..., 1]) * COLOUR_LEVELS + levels[..., 2]
    counts = [np.bincount(b.ravel(), minlength=COLOUR_LEVELS**3) for b in bins]
    return np.log1p(np.stack(counts)).astype(np.float16)


def extract_clip(path: Path, spec, model: FeatureMaps) -> tuple[dict[str, np.ndarray], float]:
    """The pools of every step of one video, and the largest |global - embed| (a self-check)."""
    frames = np.stack([step.frames[0] for step in file_steps(path, spec)])  # (T, 224, 224, 3)
    maps, stages, gap = [], {stage: [] for stage in STAGE_OUTPUTS}, 0.0
    for start in range(0, len(frames), BATCH):
        pooled, feature_map = model(frames[start : start + BATCH])
        gap = max(gap, float((feature_map.mean(dim=(2, 3)) - pooled).abs().max()))
        maps.append(feature_map)
        for stage, output in model.stages.items():
            stages[stage].append(output)
    pools = pool_clip(torch.cat(maps), {s: torch.cat(o) for s, o in stages.items()})
    return {**pools, "colour": colour_histogram(frames)}, gap


def clip_pools(
    records: list[VideoRecord], data: Path, cache: Path, spec, model: FeatureMaps | None, name: str
) -> tuple[list[dict[str, np.ndarray]], FeatureMaps | None]:
    """The pools of each record, from the cache or extracted (and cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for record in tqdm(records, desc=f"{name} clips", unit="clip"):
        cached = cache / f"{record.video_id}.npz"
        if cached.exists():
            with np.load(cached) as stored:
                if all(key in stored for key in POOLS):  # else: cached by an older version
                    clips.append({key: stored[key] for key in POOLS})
                    continue
        model = model or FeatureMaps()
        pools, gap = extract_clip(data / "videos" / f"{record.video_id}.mp4", spec, model)
        if gap > 1e-4:
            warnings.warn(f"{record.video_id}: map pool != embed by {gap:g}", stacklevel=1)
        np.savez(cached, **pools)
        clips.append(pools)
    return clips, model


def variant_features(pools: dict[str, np.ndarray], variant: str) -> np.ndarray:
    return np.concatenate([pools[pool] for pool in VARIANTS[variant]], axis=1)


def gather(
    records: list[VideoRecord], clips: list[dict[str, np.ndarray]], variant: str, spec
) -> dict[str, np.ndarray]:
    """{variant: (S, D) float32, "label": (S,)} over every step of the clips."""
    features, labels = [], []
    for record, pools in zip(records, clips, strict=True):
        x = variant_features(pools, variant).astype(np.float32)
        features.append(x)
        labels.append(step_labels(record, len(x), spec.step_seconds, spec.step_seconds / 2))
    return {variant: np.concatenate(features), "label": np.concatenate(labels)}


def on_screen(record: VideoRecord, steps: int, annotations: dict, spec) -> np.ndarray:
    """(T,) steps whose centre lies in one of the clip's ``visible`` segments."""
    return classes_on_screen(annotations[record.video_id], steps, spec.step_seconds).any(axis=1)


def error_breakdown(train: dict, test: dict, shown: np.ndarray) -> str:
    """Where the ``global`` probe (the feature check's settings) goes wrong on the test steps."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep, held = train["label"] != MULTIPLE, test["label"] != MULTIPLE
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=300, class_weight="balanced")
    )
    probe.fit(train["global"][keep], train["label"][keep])
    truth, guess, shown = test["label"][held], probe.predict(test["global"][held]), shown[held]
    wrong, event, called = truth != guess, truth > 0, guess > 0
    return (
        f"global probe, {len(truth)} test steps ({event.sum()} in events), {wrong.sum()} wrong: "
        f"event -> background {(wrong & event & ~called).sum()}, background -> event "
        f"{(~event & called).sum()} (shape on screen but silent: {(~event & called & shown).sum()}"
        f" of the {(~event & shown).sum()} such steps), event -> other event "
        f"{(wrong & event & called).sum()}"
    )


def reference_file(folder: Path, record: VideoRecord) -> Path:
    return folder / f"{record.video_id}_visual.npy"


def reference_features(folder: Path, records: list[VideoRecord]) -> list[dict[str, np.ndarray]]:
    """The `synthetic` set's visual features of each record, (T, 128), as a pool named visual."""
    return [{"visual": np.load(reference_file(folder, record))} for record in records]


def first_records(annotations: Path, split: str, count: int) -> list[VideoRecord]:
    records, _ = load_records(annotations, split, NUM_CLASSES)
    return sorted(records, key=lambda r: r.video_id)[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "held")
    parser.add_argument("--train-clips", type=int, default=60)
    parser.add_argument("--test-clips", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "probe_pooling")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="probe subsampling and shuffling")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--errors", action="store_true", help="where the global probe errs")
    parser.add_argument(
        "--reference",
        type=Path,
        default=ROOT / "data" / "held" / "features",
        help="feature files of the `synthetic` set (ID_visual.npy) for a reference row (skipped "
        "when missing)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    spec = SETS["efficientnet-logmel"].spec()  # 1 frame of 224x224 at the step's middle
    annotations = args.data / "annotations.json"
    train = first_records(annotations, "train", args.train_clips)
    test = first_records(annotations, "test", args.test_clips)

    began = time.perf_counter()
    train_pools, model = clip_pools(train, args.data, args.cache, spec, None, "train")
    test_pools, _ = clip_pools(test, args.data, args.cache, spec, model, "test")
    extracted = time.perf_counter() - began

    rows = []
    for variant in tqdm(args.variants, desc="probes", unit="variant"):
        fitted = time.perf_counter()
        report = check_modality(
            variant,
            gather(train, train_pools, variant, spec),
            gather(test, test_pools, variant, spec),
            args.seed,
        )
        rows.append((variant, report, time.perf_counter() - fitted))
    if all(reference_file(args.reference, r).exists() for r in train + test):
        fitted = time.perf_counter()
        VARIANTS[REFERENCE] = ("visual",)
        report = check_modality(
            REFERENCE,
            gather(train, reference_features(args.reference, train), REFERENCE, spec),
            gather(test, reference_features(args.reference, test), REFERENCE, spec),
            args.seed,
        )
        rows.append((REFERENCE, report, time.perf_counter() - fitted))

    steps = sum(len(p["global"]) for p in train_pools), sum(len(p["global"]) for p in test_pools)
    print(
        f"\n{len(train)} train clips ({steps[0]} steps) -> {len(test)} test clips ({steps[1]} "
        f"steps); features {extracted:.0f} s (0 when cached), {args.threads} torch threads\n"
    )
    print("| variant | dims | probe macro-F1 (test) | chance | probe fit |")
    print("|---|---:|---:|---:|---:|")
    for variant, report, seconds in rows:
        print(
            f"| `{variant}` | {report.dims} | {report.probe_f1:.2f} | {report.chance_f1:.2f} | "
            f"{seconds:.0f} s |"
        )
    if args.errors:
        database = json.loads(annotations.read_text())["database"]
        pairs = zip(test, test_pools, strict=True)
        shown = np.concatenate([on_screen(r, len(p["global"]), database, spec) for r, p in pairs])
        train_steps = gather(train, train_pools, "global", spec)
        print("\n" + error_breakdown(train_steps, gather(test, test_pools, "global", spec), shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
