"""Which stages of a ``loco-train`` run are done, kept in the work folder so a rerun resumes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .extract_features import VIDEO_SUFFIXES
from .run_settings import InputError, Settings

STAGES = ("check", "extractors", "features", "train", "score", "export")
DATA_STAGES = STAGES[:3]  # what the LoCo settings do not change


class Progress:
    """``workdir/stages.json``: each finished stage's seconds and outcome, and two fingerprints:
    of the data (inputs, extractors, splits) and of the LoCo training (config, epochs, overrides).
    A rerun skips what is done; other data is refused, another training redoes train, score and
    export (the earlier ``loco/`` folder kept beside as ``loco.<fingerprint>``)."""

    def __init__(self, workdir: Path, data: str, training: str) -> None:
        self.path = workdir / "stages.json"
        state = json.loads(self.path.read_text()) if self.path.is_file() else {}
        if state and state.get("data") != data:
            raise InputError(
                f"the work folder {workdir} holds a run on other inputs or extractor settings; "
                "pass another --workdir or delete it"
            )
        self.done: dict[str, dict] = state.get("done", {})
        if state and state.get("training") != training:
            earlier = workdir / "loco"
            if earlier.is_dir():
                kept = earlier.with_name(f"loco.{state.get('training')}")
                earlier.rename(kept)
                print(f"other LoCo settings: training again (the earlier run is kept in {kept})")
            self.done = {k: v for k, v in self.done.items() if k in DATA_STAGES}
        self.data, self.training = data, training
        self.ran: set[str] = set()

    def finish(self, stage: str, seconds: float, outcome: str) -> None:
        self.done[stage] = {"seconds": round(seconds, 1), "outcome": outcome}
        self.ran.add(stage)
        state = {"data": self.data, "training": self.training, "done": self.done}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1))
        temporary.replace(self.path)

    def table(self) -> str:
        rows = [f"{'stage':<11} {'this run':<9} {'seconds':>8}  outcome"]
        for stage in STAGES:
            entry = self.done.get(stage)
            if entry is None:
                rows.append(f"{stage:<11} {'not run':<9} {'':>8}")
                continue
            status = "ran" if stage in self.ran else "kept"
            rows.append(f"{stage:<11} {status:<9} {entry['seconds']:>8.1f}  {entry['outcome']}")
        return "\n".join(rows)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def data_fingerprint(settings: Settings) -> str:
    """What check, extractors and features depend on: the inputs' names, sizes and times, and
    the extractor and split settings."""
    parts = [str(settings.annotations.resolve()), str(settings.annotations.stat().st_mtime_ns)]
    folders = [settings.videos] + ([settings.background] if settings.background else [])
    for folder in folders:
        for path in sorted(folder.resolve().rglob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES:
                parts.append(f"{path}:{path.stat().st_size}")
    knobs = (
        settings.extractors,
        settings.validation_share,
        settings.extractor_clips,
        settings.extractor_epochs,
        settings.seed,
    )
    # only when set: the work folders of runs without the option keep their fingerprint
    knobs += ("skip_missing_videos",) if settings.skip_missing_videos else ()
    knobs += (str(settings.extractors_from.resolve()),) if settings.extractors_from else ()
    knobs += (settings.timing,) if settings.timing != "default" else ()
    knobs += tuple(str(p.resolve()) for p in (settings.vggish, settings.vggish_pca) if p)
    # the EfficientNet sets' visual head on stage 5 (work folders of the pooled embedding redo all)
    knobs += ("stage-5 head",) if settings.extractors.startswith("efficientnet") else ()
    return _digest([*parts, json.dumps(knobs)])


def training_fingerprint(settings: Settings) -> str:
    """What LoCo's training depends on beyond the data: the config's text, epochs, overrides."""
    config = settings.config.read_text() if settings.config.is_file() else str(settings.config)
    overrides = [o for o in settings.overrides if not o.startswith("train.num_threads=")]
    return _digest([config, json.dumps((settings.epochs, overrides))])
