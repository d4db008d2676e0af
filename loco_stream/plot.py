"""Event timelines as PNG: predicted events over the ground truth, one row per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

GROUND_TRUTH_COLOUR = "#2b8a3e"
PREDICTION_COLOUR = "#1c7ed6"


def plot_timeline(
    path: str | Path,
    title: str,
    duration: float,
    predictions: list[dict],
    class_names: list[str],
    ground_truth: list[dict] | None = None,
    min_score: float = 0.3,
) -> Path:
    """Draw ``predictions`` (UnAV result entries, score >= ``min_score``; opacity = score) and,
    when given, ``ground_truth`` (UnAV annotation entries) on one timeline per class present."""
    shown = [p for p in predictions if p["score"] >= min_score]
    labels = sorted(
        {int(p["label_id"]) for p in shown} | {int(g["label_id"]) for g in ground_truth or []}
    )
    height = 1.0 + 0.45 * max(len(labels), 1)
    figure, axes = plt.subplots(figsize=(12, height))
    row_of = {label: row for row, label in enumerate(labels)}
    for event in ground_truth or []:
        start, end = event["segment"]
        axes.broken_barh(
            [(start, end - start)],
            (row_of[int(event["label_id"])] - 0.4, 0.35),
            color=GROUND_TRUTH_COLOUR,
        )
    for event in shown:
        start, end = event["segment"]
        axes.broken_barh(
            [(start, end - start)],
            (row_of[int(event["label_id"])] + 0.05, 0.35),
            color=PREDICTION_COLOUR,
            alpha=min(1.0, 0.25 + 0.75 * float(event["score"])),
        )
    axes.set_yticks(range(len(labels)))
    axes.set_yticklabels(
        [class_names[k] if k < len(class_names) else str(k) for k in labels], fontsize=8
    )
    axes.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    axes.set_xlim(0, duration)
    axes.set_xlabel("time (s)")
    legend = [plt.Rectangle((0, 0), 1, 1, color=PREDICTION_COLOUR)]
    names = [f"detected (score >= {min_score}; opacity = score)"]
    if ground_truth is not None:
        legend.insert(0, plt.Rectangle((0, 0), 1, 1, color=GROUND_TRUTH_COLOUR))
        names.insert(0, "ground truth")
    axes.legend(legend, names, loc="upper right", fontsize=8)
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
