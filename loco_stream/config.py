"""Dataclass configs and their YAML loader (no torch here: the runtime reads them too).

A config file has up to four sections, each a dataclass below:

    model:  {variant: loco, embed_dim: 512, ...}     # ModelConfig
    data:   {annotations: ..., feature_dir: ...}     # DataConfig
    train:  {epochs: 45, lr: 1.0e-4, ...}             # TrainConfig
    decode: {score_threshold: 0.001, ...}             # DecodeConfig

Files are read with ``yaml.safe_load``; unknown keys are errors that list the valid ones, a value
of the wrong type (``train.lr=fast``) is an error naming the key and the type it needs, and
``key=value`` overrides (``train.epochs=3``, values read as YAML) are applied on top.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .limits import LimitError, check

POSITION_ENCODINGS = ("none", "sinusoidal")
VARIANTS = ("loco", "no_lcc", "no_cdp", "baseline", "audio_only", "visual_only")


class ConfigError(ValueError):
    """A config file or override that cannot be used as written."""


@dataclass
class ModelConfig:
    """Dimensions and switches of the LoCo network (docs/architecture.md, "The network")."""

    variant: str = "loco"  # one of VARIANTS
    visual_dim: int = 2048  # Dv of the visual features
    audio_dim: int = 128  # Da of the audio features
    num_classes: int = 100
    window: int = 256  # T: steps per window (training crop and exported graph length)
    embed_dim: int = 512  # D
    num_heads: int = 4
    num_proj_layers: int = 2  # masked Conv1d k=3 + LayerNorm + ReLU, per modality
    num_encoder_blocks: int = 2  # local self-attention blocks per modality
    encoder_radius: int = 9  # band radius of the local self-attention (steps)
    # "none": no absolute positions (the convolutional projection gives local order), so the
    # network is the same at every stream step and runs as a step graph (docs/streaming_graph.md).
    # "sinusoidal": an encoding tied to the window's start (models built before; cards without the
    # field are read so).
    position_encoding: str = field(default="sinusoidal", metadata={"optional": True})
    num_levels: int = 6  # pyramid levels, stride 2 between them
    cdp_radius: int = 8  # hard band radius R of CDP at every level (steps of that level)
    lcc_dim: int = 128  # shared space of the LCC similarity
    lcc_radius: int = 2  # w_lcc: neighbourhood gathered by the correction
    lcc_positive_radius: int = 2  # w_pos: cross-modal pairs this close are positives
    lcc_negative_gap: int = 8  # pairs at least this far apart are negatives
    lcc_temperature: float = 0.1  # tau
    lcc_weight: float = 0.1  # lambda_lcc
    head_dim: int = 512
    num_head_layers: int = 3
    class_aware_regression: bool = False
    regression_ranges: list = field(
        default_factory=lambda: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
    )
    drop_path: float = 0.1
    # dropout on the (standardised) input features while training; optional in a card, as below
    feature_dropout: float = field(default=0.0, metadata={"optional": True})
    # Per-dimension input standardisation measured on the training split (loco_stream/model/
    # standardise.py): {"visual": {"mean": [Dv], "scale": [Dv]}, "audio": {...}}; {} for none.
    # Optional in a model directory's card: cards written before it existed load as {}.
    feature_stats: dict = field(default_factory=dict, metadata={"optional": True})

    def __post_init__(self) -> None:
        _check_limits("model", self, MODEL_LIMITS)
        if self.variant not in VARIANTS:
            raise ConfigError(f"model.variant {self.variant!r} is unknown; use one of {VARIANTS}")
        if self.position_encoding not in POSITION_ENCODINGS:
            raise ConfigError(
                f"model.position_encoding {self.position_encoding!r} is unknown; "
                f"use one of {POSITION_ENCODINGS}"
            )
        if len(self.regression_ranges) != self.num_levels:
            raise ConfigError(
                f"model.regression_ranges has {len(self.regression_ranges)} entries but "
                f"model.num_levels is {self.num_levels}; give one [low, high] per level"
            )
        if self.window % self.max_stride:
            raise ConfigError(
                f"model.window={self.window} must be a multiple of the top level's stride "
                f"{self.max_stride} (2**(num_levels-1))"
            )
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"model.embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        self._check_feature_stats()

    def _check_feature_stats(self) -> None:
        if not isinstance(self.feature_stats, dict):
            raise ConfigError("model.feature_stats must be a mapping of modality to mean and scale")
        dims = {"visual": self.visual_dim, "audio": self.audio_dim}
        for modality, entry in self.feature_stats.items():
            if modality not in dims:
                raise ConfigError(f"model.feature_stats: unknown modality {modality!r}")
            if not isinstance(entry, dict) or set(entry) != {"mean", "scale"}:
                raise ConfigError(f"model.feature_stats.{modality} must hold mean and scale")
            for key in ("mean", "scale"):
                values = entry[key]
                if not isinstance(values, list) or len(values) != dims[modality]:
                    raise ConfigError(
                        f"model.feature_stats.{modality}.{key} must list {dims[modality]} numbers "
                        f"(model.{modality}_dim)"
                    )
            if any(not value > 0 for value in entry["scale"]):
                raise ConfigError(f"model.feature_stats.{modality}.scale must be positive")

    @property
    def max_stride(self) -> int:
        return 2 ** (self.num_levels - 1)

    @property
    def uses_lcc(self) -> bool:
        return self.variant in ("loco", "no_cdp")

    @property
    def uses_cdp(self) -> bool:
        return self.variant in ("loco", "no_lcc", "audio_only", "visual_only")

    @property
    def uses_audio(self) -> bool:
        return self.variant != "visual_only"

    @property
    def uses_visual(self) -> bool:
        return self.variant != "audio_only"


@dataclass
class DataConfig:
    """Where features and annotations live, and how steps map to seconds.

    Step ``i`` is centred at ``step_offset + i * step_seconds`` seconds. For UnAV-100's I3D/VGGish
    release (25 fps, 24-frame windows, stride 8): step 0.32 s, offset 0.48 s. For ONE-PEACE and this
    project's own extractors: step 0.25 s, offset 0.125 s.
    """

    annotations: str = ""
    feature_dir: str = ""
    visual_files: list = field(default_factory=lambda: ["{vid}_rgb.npy", "{vid}_flow.npy"])
    audio_files: list = field(default_factory=lambda: ["{vid}_vggish.npy"])
    step_seconds: float = 0.32
    step_offset: float = 0.48
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str = "test"
    crop_ratio: list = field(default_factory=lambda: [0.9, 1.0])
    skip_missing_features: bool = False  # train on the videos that have features, skip the rest
    online_crop_share: float = 0.0  # training crops whose right edge falls inside an event
    # training windows with room left that a crop of another clip fills before their own
    splice_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("online_crop_share", "splice_share"):
            share = getattr(self, name)
            if not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
                raise ConfigError(
                    f"data.{name} is a share of the training crops, 0 to 1; got {share}"
                )


@dataclass
class TrainConfig:
    """Optimisation settings (UnAV-100 reference values by default)."""

    # Length: ``epochs`` passes over the train clips if set, else ``steps`` optimizer steps if
    # set, else sized to the data (train/schedule.py: more clips, more steps).
    epochs: int | None = None
    steps: int | None = None
    warmup_epochs: int = 5  # linear warm-up; capped at a tenth of the run
    patience: int = 10  # validations without a better avg mAP before stopping early (0: never)
    # a validation within this many avg mAP points of the best keeps its (later) checkpoint and
    # restarts the patience count (train/schedule.py)
    selection_tolerance: float = 0.0
    standardize: bool = True  # measure model.feature_stats on the train split (if not set)
    batch_size: int = 16
    lr: float = 1.0e-4
    weight_decay: float = 1.0e-4
    clip_grad: float = 1.0
    ema_decay: float = 0.999
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    loss_normalizer: float = 250.0  # initial EMA of the positive count
    loss_normalizer_momentum: float = 0.9
    val_every: int = 5  # epochs between validations (0: never)
    seed: int = 2023
    output_dir: str = "runs/default"
    init_from: str = ""  # a checkpoint whose weights (EMA if kept) start the training: fine-tuning
    num_threads: int = 0  # torch threads (0: torch's default)
    device: str = "cpu"  # cpu, cuda, or auto (CUDA when available)

    def __post_init__(self) -> None:
        given = {key: key for key in ("epochs", "steps") if getattr(self, key) is not None}
        _check_limits("train", self, {"batch_size": "batch_size", **given})
        if self.patience < 0:
            raise ConfigError(
                f"train.patience must be 0 (never stop early) or more, got {self.patience}"
            )
        if not (math.isfinite(self.selection_tolerance) and self.selection_tolerance >= 0):
            raise ConfigError(
                "train.selection_tolerance must be avg mAP points, 0 or more, got "
                f"{self.selection_tolerance}"
            )


@dataclass
class DecodeConfig:
    """Host-side post-processing: threshold, top-k, per-class Gaussian soft-NMS, cap."""

    score_threshold: float = 0.001  # candidate floor; events need StitchConfig.threshold
    pre_nms_topk: int = 2000
    nms_sigma: float = 0.4
    max_segments: int = 100
    min_duration: float = 0.05  # segments shorter than this many steps are dropped

    def __post_init__(self) -> None:
        _check_limits("decode", self, {"pre_nms_topk": "steps", "max_segments": "max_events"})


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# a limit (loco_stream.limits) per field of ModelConfig that sizes the network
MODEL_LIMITS = {
    "visual_dim": "feature_dim",
    "audio_dim": "feature_dim",
    "num_classes": "num_classes",
    "window": "window",
    "embed_dim": "width",
    "head_dim": "width",
    "lcc_dim": "width",
    "num_heads": "num_heads",
    "num_proj_layers": "layers",
    "num_encoder_blocks": "layers",
    "num_levels": "layers",
    "num_head_layers": "layers",
    "encoder_radius": "radius",
    "cdp_radius": "radius",
    "lcc_radius": "radius",
}


def _check_limits(section: str, values: Any, limits: dict[str, str]) -> None:
    """Each field of ``limits`` (field -> limit) in its range, else a `ConfigError` naming it."""
    for key, limit in limits.items():
        try:
            check(limit, getattr(values, key), f"{section}.{key}")
        except LimitError as error:
            raise ConfigError(str(error)) from None


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_SECTION_CLASSES = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


def _build_section(name: str, values: Any) -> Any:
    cls = _SECTION_CLASSES[name]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {type(values).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in config section {name!r}; valid keys: {', '.join(valid)}"
        )
    types = typing.get_type_hints(cls)
    checked = {key: check_type(f"{name}.{key}", value, types[key]) for key, value in values.items()}
    return cls(**checked)


_TYPE_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list, e.g. [a, b]",
    dict: "a mapping",
}


def check_type(key: str, value: Any, expected: Any, strict: bool = False) -> Any:
    """``value`` if it is of its field's plain type, else a `ConfigError` naming ``key`` and the
    type it needs. Unless ``strict`` (a model card), a number written ``1e-4``, which YAML reads
    as a string, becomes a float."""
    if expected is float and isinstance(value, str) and not strict:
        try:
            value = float(value)
        except ValueError:
            pass
    if expected is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif expected in (bool, str, list, dict):
        fits = isinstance(value, expected)
    else:  # a union or other annotation: left to the dataclass
        return value
    if not fits:
        wanted = _TYPE_NAMES[expected]
        raise ConfigError(f"{key} must be {wanted}, got {value!r} ({type(value).__name__})")
    return value


def config_from_dict(raw: dict) -> Config:
    """Build a Config from plain data (a parsed YAML file or a checkpoint's stored dict)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_SECTION_CLASSES))
    if unknown:
        raise ConfigError(
            f"unknown config section(s) {unknown}; valid sections: {', '.join(_SECTION_CLASSES)}"
        )
    try:
        return Config(**{name: _build_section(name, raw.get(name)) for name in _SECTION_CLASSES})
    except TypeError as error:  # a value of the wrong shape for a dataclass
        raise ConfigError(f"invalid config: {error}") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a raw config dict."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        path, value = item.split("=", 1)
        section, key = path.split(".", 1)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"cannot override {path}: section {section!r} is not a mapping")
        try:
            raw[section][key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = str(error).splitlines()[0]
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({problem}); quote items that "
                f"hold braces or colons, e.g. {path}='[\"{{vid}}_visual.npy\"]'"
            ) from None
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (safe_load only) and apply ``key=value`` overrides."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        with open(path, encoding="utf-8") as handle:
            try:
                raw = yaml.safe_load(handle) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    return config_from_dict(apply_overrides(raw, overrides or []))
