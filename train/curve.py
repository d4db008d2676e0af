"""The training curve: loss and validation avg mAP over optimizer steps, as a picture and a table.

Both read the run's ``metrics.jsonl`` (one record an epoch, ``val_mAP`` where it validated).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the file backend)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kept_validation(validated: list[dict]) -> dict:
    """The validation whose checkpoint was kept: the last one marked ``best`` (the loop marks the
    first validation, then each one kept)."""
    return next(r for r in reversed(validated) if r.get("best"))


def plot_curve(metrics_path: Path, out: Path) -> Path | None:
    """``out``: training loss and validation avg mAP over steps, the kept validation marked."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    steps = [r.get("step", r["epoch"]) for r in records]
    figure, loss_axis = pyplot.subplots(figsize=(8, 4.5))
    loss_axis.plot(steps, [r["loss_total"] for r in records], color="tab:gray", label="train loss")
    loss_axis.set_xlabel("optimizer steps")
    loss_axis.set_ylabel("train loss")
    validated = [r for r in records if "val_mAP" in r]
    if validated:
        map_axis = loss_axis.twinx()
        validated_steps = [r.get("step", r["epoch"]) for r in validated]
        map_axis.plot(
            validated_steps,
            [r["val_mAP"] for r in validated],
            "o-",
            color="tab:blue",
            label="val avg mAP",
        )
        kept = kept_validation(validated)
        kept_point = ([kept.get("step", kept["epoch"])], [kept["val_mAP"]])
        map_axis.plot(*kept_point, "*", color="tab:red", markersize=14, label="kept")
        map_axis.set_ylabel("validation avg mAP (%)")
        lines = loss_axis.get_lines() + map_axis.get_lines()
        map_axis.legend(lines, [line.get_label() for line in lines], loc="center right")
    stopped = " (stopped early)" if records[-1].get("stopped_early") else ""
    loss_axis.set_title(f"LoCo training: {steps[-1]} steps{stopped}")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    pyplot.close(figure)
    return out


def curve_table(metrics_path: Path, rows: int = 12) -> str:
    """The validations as a text table (at most ``rows``, the kept one always among them)."""
    validated = [r for r in read_metrics(metrics_path) if "val_mAP" in r]
    if not validated:
        return "no validation ran"
    kept = kept_validation(validated)
    every = max(1, -(-len(validated) // rows))  # ceil: at most ``rows`` rows, then kept and last
    last = validated[-1]
    shown = [r for i, r in enumerate(validated) if i % every == 0 or r is kept or r is last]
    lines = [f"{'step':>7} {'epoch':>6} {'loss':>7} {'val avg mAP':>12}"]
    for r in shown:
        mark = "  <- kept" if r is kept else ""
        step, epoch, loss = r.get("step", ""), r["epoch"], r["loss_total"]
        lines.append(f"{step:>7} {epoch:>6} {loss:>7.3f} {r['val_mAP']:>12.2f}{mark}")
    return "\n".join(lines)
