"""Before an hour of training: do the features carry the events at all?

    python -m train.feature_check --config CONFIG [section.key=value ...]

Per modality, on the feature files ``data`` points at: dead dimensions (zero at every step),
constant ones, NaN/inf values, and a *linear probe*: a logistic regression (scikit-learn, class
weights balanced) from one step's features to its label, the event class whose annotated segment
holds the step's centre or background (steps inside events of two classes are left out). It
learns on the train split and is scored on held-out clips (the validation split) by macro-F1 over
background and the classes. The same probe trained on shuffled labels is the chance level; a
modality *separates* the classes when its probe beats chance by ``MARGIN``. ``loco-train`` runs it
after extracting features and warns in plain words when a modality does not. docs/training.md
shows what it found on the project's own features.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from loco_stream.config import Config, ConfigError, load_config

from .data import DataError, VideoRecord, load_features, load_records, usable_records

MARGIN = 0.1  # macro-F1 a probe must gain over its shuffled-label control
MAX_PROBE_STEPS = 10_000  # train steps the probe learns from (a random subset beyond this)
MULTIPLE = -1  # label of a step inside events of two classes: left out


@dataclass
class ModalityReport:
    """What the check found in one modality's features."""

    modality: str
    dims: int
    dead: int  # dimensions that are 0 at every step
    constant: int  # other dimensions that never change
    non_finite: int  # NaN or inf values
    probe_f1: float  # held-out macro-F1 of the linear probe
    chance_f1: float  # the same probe trained on shuffled labels
    classes_seen: int  # event classes with held-out steps

    @property
    def separates(self) -> bool:
        return self.non_finite == 0 and self.probe_f1 >= self.chance_f1 + MARGIN

    def line(self) -> str:
        verdict = "separates the classes" if self.separates else "DOES NOT separate the classes"
        return (
            f"{self.modality:<7} {self.dims:>5} dims, {self.dead} dead, {self.constant} constant, "
            f"{self.non_finite} NaN/inf; probe macro-F1 {self.probe_f1:.2f} "
            f"(chance {self.chance_f1:.2f}): {verdict}"
        )

    def warning(self) -> str | None:
        if self.non_finite:
            return (
                f"the {self.modality} features hold {self.non_finite} NaN or infinite values: "
                "fix the extractor before training"
            )
        if not self.separates:
            return (
                f"the {self.modality} features do not tell the event classes apart (a linear probe "
                f"scores macro-F1 {self.probe_f1:.2f} on held-out clips, chance is "
                f"{self.chance_f1:.2f}): check that the annotations match the videos in time and "
                f"class, or use extractors that see what your events look or sound like"
            )
        return None


def step_labels(record: VideoRecord, steps: int, step_seconds: float, offset: float) -> np.ndarray:
    """(T,) per-step label: 0 background, k + 1 inside an event of class k, MULTIPLE for two."""
    centres = offset + step_seconds * np.arange(steps)
    labels = np.zeros(steps, dtype=np.int64)
    for (start, end), label in zip(record.segments, record.labels, strict=True):
        inside = (centres >= start) & (centres <= end)
        clash = inside & (labels > 0) & (labels != label + 1)
        labels[inside & (labels == 0)] = label + 1
        labels[clash] = MULTIPLE
    return labels


def gather(records: list[VideoRecord], config: Config, progress: bool) -> dict[str, np.ndarray]:
    """Every step of ``records``: {"visual": (S, Dv), "audio": (S, Da), "label": (S,)}."""
    parts: dict[str, list[np.ndarray]] = {"visual": [], "audio": [], "label": []}
    data = config.data
    for record in tqdm(records, desc="feature check", disable=not progress, leave=False):
        visual, audio = load_features(
            data.feature_dir, record.video_id, data, config.model, allow_non_finite=True
        )
        parts["visual"].append(visual)
        parts["audio"].append(audio)
        parts["label"].append(step_labels(record, len(visual), data.step_seconds, data.step_offset))
    return {key: np.concatenate(value) for key, value in parts.items()}


def probe_f1(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    """Held-out macro-F1 of a balanced logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return 0.0
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=300, class_weight="balanced")
    )
    probe.fit(train_x, train_y)
    return float(f1_score(test_y, probe.predict(test_x), average="macro"))


def check_modality(
    modality: str, train: dict[str, np.ndarray], held_out: dict[str, np.ndarray], seed: int
) -> ModalityReport:
    """The report of one modality's features (``train``/``held_out`` from ``gather``)."""
    features = train[modality]
    finite = np.isfinite(features).all(axis=1) & (train["label"] != MULTIPLE)
    held = np.isfinite(held_out[modality]).all(axis=1) & (held_out["label"] != MULTIPLE)
    rng = np.random.default_rng(seed)
    chosen = np.flatnonzero(finite)
    if len(chosen) > MAX_PROBE_STEPS:
        chosen = np.sort(rng.choice(chosen, MAX_PROBE_STEPS, replace=False))
    x, y = features[chosen], train["label"][chosen]
    test_x, test_y = held_out[modality][held], held_out["label"][held]
    clean = features[np.isfinite(features).all(axis=1)]
    dead = int(np.all(clean == 0, axis=0).sum()) if len(clean) else features.shape[1]
    spread = clean.max(axis=0) - clean.min(axis=0) if len(clean) else np.zeros(features.shape[1])
    non_finite = int((~np.isfinite(features)).sum() + (~np.isfinite(held_out[modality])).sum())
    return ModalityReport(
        modality=modality,
        dims=features.shape[1],
        dead=dead,
        constant=int((spread == 0).sum()) - dead,
        non_finite=non_finite,
        probe_f1=round(probe_f1(x, y, test_x, test_y), 3),
        chance_f1=round(probe_f1(x, rng.permutation(y), test_x, test_y), 3),
        classes_seen=int(len(np.unique(test_y[test_y > 0]))),
    )


def check_features(config: Config, progress: bool = True) -> list[ModalityReport]:
    """Reports for the modalities the model uses: train split against the validation split."""
    data = config.data
    splits = {}
    for split in (data.train_split, data.val_split):
        records, _ = load_records(data.annotations, split, config.model.num_classes)
        records, _ = usable_records(records, data, split)
        splits[split] = gather(records, config, progress)
    modalities = [
        name
        for name, used in (("visual", config.model.uses_visual), ("audio", config.model.uses_audio))
        if used
    ]
    return [
        check_modality(m, splits[data.train_split], splits[data.val_split], config.train.seed)
        for m in modalities
    ]


def report_text(reports: list[ModalityReport]) -> str:
    lines = ["feature check (linear probe, train split -> validation split):"]
    lines += ["  " + report.line() for report in reports]
    lines += [f"warning: {w}" for w in (r.warning() for r in reports) if w]
    return "\n".join(lines)


def report_json(reports: list[ModalityReport]) -> dict:
    return {r.modality: {**asdict(r), "separates": r.separates} for r in reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.feature_check", description=__doc__)
    parser.add_argument("--config", required=True, help="the YAML config training would use")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_args(argv)
    try:
        reports = check_features(load_config(args.config, args.overrides), progress=not args.json)
    except (ConfigError, DataError) as error:
        print(f"feature_check: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report_json(reports), indent=1) if args.json else report_text(reports))
    return 0 if all(r.separates for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
