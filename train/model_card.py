"""The model card of a ``loco-train`` run: its scores, data, settings and each stage's time,
as ``results`` for ``model_card.json`` and as ``MODEL_CARD.md`` for people."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .curve import read_metrics
from .run_settings import Settings
from .stage_progress import Progress


def card_results(
    settings: Settings, database: dict, classes: list[str], config, scores: dict, progress: Progress
) -> dict:
    """The model card's ``results``: scores, data, settings and each stage's time."""
    subsets = Counter(
        ("background " if e.get("background") else "") + e["subset"] for e in database.values()
    )
    return {
        **scores,
        "clips": dict(sorted(subsets.items())),
        "classes": len(classes),
        "extractors": settings.extractors,
        **trained_length(Path(config.train.output_dir)),
        "feature_check": feature_check_summary(settings.workdir),
        "config": str(settings.config.name),
        "overrides": settings.overrides,
        "stage_seconds": {stage: entry["seconds"] for stage, entry in progress.done.items()},
        "command": settings.command,
    }


def trained_length(run: Path) -> dict:
    """Epochs and optimizer steps LoCo trained, the step of the kept checkpoint, early stop."""
    metrics = read_metrics(run / "metrics.jsonl")
    if not metrics:
        return {}
    validated = [m for m in metrics if "val_mAP" in m]
    best = max(validated, key=lambda m: m["val_mAP"]) if validated else metrics[-1]
    return {
        "epochs": metrics[-1]["epoch"],
        "steps": metrics[-1].get("step"),
        "best_step": best.get("step"),
        "stopped_early": bool(metrics[-1].get("stopped_early")),
    }


def feature_check_summary(workdir: Path) -> dict:
    """Probe macro-F1 and chance per modality from the features stage's check."""
    path = workdir / "feature_check.json"
    if not path.is_file():
        return {}
    reports = json.loads(path.read_text())
    keys = ("probe_f1", "chance_f1", "separates")
    return {modality: {k: report[k] for k in keys} for modality, report in reports.items()}


def model_card_text(results: dict, opened: str) -> str:
    """``MODEL_CARD.md``: the card for people."""
    lines = [
        "# Model card",
        "",
        "Built by `loco-train`; runs with `loco-stream --model DIR` or `loco-detect --model DIR`.",
        f"Runtime: {opened}.",
        "",
        f"- classes: {results['classes']}; extractors: {results['extractors']}; "
        f"LoCo: {results.get('steps')} steps, {results.get('epochs')} epochs, kept step "
        f"{results.get('best_step')}{' (stopped early)' if results.get('stopped_early') else ''} "
        f"({results['config']} {' '.join(results['overrides'])})",
        f"- clips: {', '.join(f'{count} {subset}' for subset, count in results['clips'].items())}",
    ]
    if "test_average_mAP" in results:
        tious = " | ".join(results["test_mAP"])
        values = " | ".join(f"{m:.2f}" for m in results["test_mAP"].values())
        lines += [
            f"- test avg mAP: **{results['test_average_mAP']:.2f}**",
            "",
            f"| tIoU | {tious} |",
            "|---" * (len(results["test_mAP"]) + 1) + "|",
            f"| mAP | {values} |",
        ]
    else:
        lines.append("- no test subset: not scored")
    for modality, check in results.get("feature_check", {}).items():
        verdict = "separates the classes" if check["separates"] else "does NOT separate the classes"
        lines.append(
            f"- feature check, {modality}: probe macro-F1 {check['probe_f1']:.2f} "
            f"(chance {check['chance_f1']:.2f}), {verdict}"
        )
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds} |" for stage, seconds in results["stage_seconds"].items()]
    return "\n".join(lines) + "\n"
