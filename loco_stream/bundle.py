"""The model directory format, owned here: file names, typed metadata, hashes, reading, checking.

A model directory is what ``python -m export`` writes and what the runtime loads:

    model_card.json         the manifest: format, package version, the metadata of the window
                            graph and of each extractor, the SHA-256 and the input/output
                            signature of every file, and what training reported (``results``)
    loco.onnx               window graph: visual (1,T,Dv), audio (1,T,Da), mask (1,T)
                            -> scores (1,N,C), segments (1,N,2) or (1,N,C,2)
    audio_extractor.onnx    one step's audio input -> features (1, Da)
    visual_extractor.onnx   one step's frames (uint8) -> features (1, Dv)
    loco_step.onnx          optional: the step graph (streamable models): the network run on a
                            stream a few steps a call, state in and out (docs/step_graph.md)
    loco_step_offline.onnx  optional: the same, 128 steps a call (loco-detect's whole clips)
    loco_fp16.onnx          optional: the window graph in fp16 (fp32 inputs and outputs)
    loco_int8.onnx          optional: the window graph with Q/DQ nodes (INT8, calibrated)
    *_batch.onnx            optional: the three graphs with a free batch axis (dim 0), so one
                            call serves many streams (``loco_stream.stream.batched``)
    loco.pt, extractors.pt  optional: the checkpoints the graphs came from (torch backend,
                            re-export)

Each graph also carries its own section of the metadata (``metadata_props["loco_stream"]``), so a
graph on its own (a TensorRT engine's sidecar, a feature-extraction worker) knows what it is.
``read_bundle`` checks a directory before anything runs: the card parses and agrees with itself,
every listed file exists with its recorded SHA-256, parses as ONNX, and has the recorded inputs
and outputs. Every problem is one ``ModelDirError`` line that starts with the file it is about.
No torch and no ONNX Runtime here: ``onnx`` parses the graphs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from .config import ConfigError, DecodeConfig, ModelConfig, check_type
from .features.steps import StepSpec
from .limits import check
from .postprocess import point_grid

FORMAT = 1  # version of the model_card.json layout; bumped when it changes incompatibly
CARD = "model_card.json"
WINDOW_GRAPH = "loco.onnx"
WINDOW_FP16_GRAPH = "loco_fp16.onnx"
WINDOW_INT8_GRAPH = "loco_int8.onnx"
STEP_GRAPH = "loco_step.onnx"
OFFLINE_STEP_GRAPH = "loco_step_offline.onnx"  # the step graph, OFFLINE_STEP_HOP steps a call
OFFLINE_STEP_HOP = 128
AUDIO_GRAPH = "audio_extractor.onnx"
VISUAL_GRAPH = "visual_extractor.onnx"
WINDOW_CHECKPOINT = "loco.pt"
EXTRACTOR_CHECKPOINT = "extractors.pt"
WINDOW_GRAPHS = {"fp32": WINDOW_GRAPH, "fp16": WINDOW_FP16_GRAPH, "int8": WINDOW_INT8_GRAPH}
EXTRACTOR_GRAPHS = {"audio": AUDIO_GRAPH, "visual": VISUAL_GRAPH}
BATCH_GRAPHS = {  # role -> the graph with a free batch axis (optional, written by export --batch)
    "window": "loco_batch.onnx",
    "audio": "audio_extractor_batch.onnx",
    "visual": "visual_extractor_batch.onnx",
}
METADATA_KEY = "loco_stream"  # key of each graph's metadata JSON in its metadata_props
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default_model"
# --model NAME: the packaged models (both know the 16 synthetic demo classes only)
PACKAGED_MODELS = {
    "default": DEFAULT_MODEL_DIR,  # the small CNNs trained on the synthetic shapes
    "efficientnet": DEFAULT_MODEL_DIR.with_name("efficientnet_model"),  # the pretrained set
}
DEFAULT_HOP_STEPS = 4  # steps between two runs of the window graph: 1 s at 0.25 s a step
REEXPORT = "re-export the model directory with `python -m export`"

CARD_KEYS = ("format", "version", "window", "extractors", "files", "results")
Signature = dict[str, list]  # tensor name -> [shape (None: free dim), dtype name]


class ModelDirError(ValueError):
    """A model directory that cannot be used; the message starts with the file it is about."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


class MissingFileError(ModelDirError):
    """The directory, its card or a graph the card lists is not there."""


class DamagedFileError(ModelDirError):
    """A file whose bytes are not what was exported: changed, truncated, replaced, not ONNX."""


class MismatchError(ModelDirError):
    """Files that do not fit together: a card that contradicts itself or a graph."""


def package_version() -> str:
    """The installed loco-stream version (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return importlib.metadata.version("loco-stream")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def typed(cls: type, values: Any, where: str) -> Any:
    """``cls(**values)`` for a dataclass, refusing unknown and missing keys by name (``where``
    says what is being read). New fields of ``cls`` flow through without code here; fields marked
    ``metadata={"optional": True}`` may be absent (cards written before they existed)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a JSON object, not {type(values).__name__}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    required = [f.name for f in fields if not f.metadata.get("optional")]
    unknown, missing = sorted(set(values) - set(names)), [n for n in required if n not in values]
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; this loco-stream knows {names}")
    if missing:
        raise ValueError(f"{where} lacks key(s) {missing}")
    types = typing.get_type_hints(cls)
    try:
        for key, value in values.items():
            check_type(f"{where}.{key}", value, types[key], strict=True)
    except ConfigError as error:
        raise ValueError(str(error)) from None
    try:
        return cls(**values)
    except (TypeError, ConfigError) as error:
        raise ValueError(f"{where}: {error}") from None


@dataclass(frozen=True)
class WindowInfo:
    """The window graph's metadata: what the host needs to feed it and read its outputs."""

    classes: tuple[str, ...]
    window: int  # T, steps per window
    hop_steps: int  # steps between two runs in the stream
    step_seconds: float
    step_offset: float  # step i is centred at step_offset + i * step_seconds
    decode: DecodeConfig
    model: ModelConfig  # the network (visual_dim, audio_dim, num_classes, ...)
    # steps per call of the step graph (loco_step.onnx); 0: the directory has none
    step_hop: int = field(default=0, metadata={"optional": True})

    @property
    def visual_dim(self) -> int:
        return self.model.visual_dim

    @property
    def audio_dim(self) -> int:
        return self.model.audio_dim

    @functools.cached_property  # read every window of every stream: computed once
    def point_positions(self) -> np.ndarray:
        """(N,) the step of each of the window graph's points (its outputs' rows)."""
        return point_grid(self.window, self.model.num_levels)[0]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, values: Any, where: str = "window") -> WindowInfo:
        info = typed(cls, values, where)
        names = info.classes
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{where}.classes must be a list of class names, got {info.classes!r}")
        return dataclasses.replace(
            info,
            classes=tuple(info.classes),
            decode=typed(DecodeConfig, info.decode, f"{where}.decode"),
            model=typed(ModelConfig, info.model, f"{where}.model"),
        )

    def signature(self) -> tuple[Signature, Signature]:
        """The window graph's (inputs, outputs) as this metadata implies them."""
        t, classes = self.window, len(self.classes)
        inputs = {
            "visual": [[1, t, self.visual_dim], "float32"],
            "audio": [[1, t, self.audio_dim], "float32"],
            "mask": [[1, t], "float32"],
        }
        boxes = [1, None, classes, 2] if self.model.class_aware_regression else [1, None, 2]
        return inputs, {"scores": [[1, None, classes], "float32"], "segments": [boxes, "float32"]}


@dataclass(frozen=True)
class ExtractorInfo:
    """One per-step extractor's metadata: the network, its feature size, the step it cuts."""

    modality: str  # "audio" or "visual"
    network: str  # class name of the torch module it was exported from
    feature_dim: int
    step: StepSpec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, where: str) -> ExtractorInfo:
        info = typed(cls, values, where)
        if info.modality not in EXTRACTOR_GRAPHS:
            raise ValueError(f"{where}.modality must be one of {list(EXTRACTOR_GRAPHS)}")
        check("feature_dim", info.feature_dim, f"{where}.feature_dim")
        return dataclasses.replace(info, step=typed(StepSpec, info.step, f"{where}.step"))


def embedded_metadata(
    info: WindowInfo | ExtractorInfo, version: str, step: bool = False
) -> dict[str, Any]:
    """What a graph carries in ``metadata_props["loco_stream"]``: its kind, version and metadata
    (the step graph carries the window graph's, as kind ``step``)."""
    if isinstance(info, WindowInfo):
        kind = "step" if step else "window"
    else:
        kind = f"{info.modality}_extractor"
    return {"kind": kind, "version": version, **info.to_dict()}


@dataclass(frozen=True)
class FileEntry:
    """What the card records of one file: its SHA-256, and for a graph its signature."""

    sha256: str
    inputs: Signature | None = None  # None for a checkpoint
    outputs: Signature | None = None


@dataclass(frozen=True)
class ModelCard:
    """The contents of ``model_card.json``."""

    window: WindowInfo
    extractors: dict[str, ExtractorInfo]  # modality -> its extractor
    files: dict[str, FileEntry]  # file name -> entry
    version: str = field(default_factory=package_version)
    results: dict[str, Any] = field(default_factory=dict)  # what training measured, free-form

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "window": self.window.to_dict(),
            "extractors": {m: e.to_dict() for m, e in self.extractors.items()},
            "files": {name: dataclasses.asdict(entry) for name, entry in self.files.items()},
            "results": self.results,
        }

    @classmethod
    def from_dict(cls, values: Any) -> ModelCard:
        if not isinstance(values, dict):
            raise ValueError("it must be a JSON object")
        unknown = sorted(set(values) - set(CARD_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; this loco-stream knows {list(CARD_KEYS)}")
        if values.get("format") != FORMAT:
            raise ValueError(
                f"format {values.get('format')!r} is not this loco-stream's ({FORMAT})"
            )
        extractors = values.get("extractors")
        if not isinstance(extractors, dict) or sorted(extractors) != sorted(EXTRACTOR_GRAPHS):
            raise ValueError(f"extractors must describe exactly {sorted(EXTRACTOR_GRAPHS)}")
        files = values.get("files")
        if not isinstance(files, dict):
            raise ValueError("files must be a JSON object of file name -> entry")
        return cls(
            window=WindowInfo.from_dict(values.get("window")),
            extractors={
                m: ExtractorInfo.from_dict(e, f"extractors.{m}") for m, e in extractors.items()
            },
            files={name: typed(FileEntry, e, f"files.{name}") for name, e in files.items()},
            version=str(values.get("version")),
            results=dict(values.get("results") or {}),
        )

    def embedded(self, name: str) -> dict[str, Any]:
        """The metadata embedded in graph ``name``: its kind and its part of the card."""
        role = graph_role(name)
        if role in ("window", "step"):
            return embedded_metadata(self.window, self.version, step=role == "step")
        return embedded_metadata(self.extractors[role], self.version)

    def expected_signature(self, name: str) -> tuple[Signature | None, Signature | None]:
        """(inputs, outputs) that the metadata implies for graph ``name`` (a batched graph's dim 0
        is free); None where only the graph itself knows them (the step graph's state)."""
        role = graph_role(name)
        if role == "step":
            return None, None
        if role == "window":
            inputs, outputs = self.window.signature()
        else:
            feature_dim = self.extractors[role].feature_dim
            inputs, outputs = None, {"features": [[1, feature_dim], "float32"]}
        if name not in BATCH_GRAPHS.values():
            return inputs, outputs
        return (None if inputs is None else free_batch(inputs)), free_batch(outputs)

    def check_metadata(self) -> None:
        """Raise ValueError where the window graph's and the extractors' metadata disagree."""
        window = self.window
        if len(window.classes) != window.model.num_classes:
            raise ValueError(
                f"window lists {len(window.classes)} classes but its model has "
                f"{window.model.num_classes}"
            )
        if not 1 <= window.hop_steps <= window.window:
            raise ValueError(f"window.hop_steps {window.hop_steps} is not in [1, {window.window}]")
        if window.step_hop < 0 or window.step_hop & (window.step_hop - 1):
            raise ValueError(f"window.step_hop {window.step_hop} is not 0 or a power of two")
        wanted = {"visual": window.visual_dim, "audio": window.audio_dim}
        for modality, extractor in self.extractors.items():
            if extractor.modality != modality:
                raise ValueError(f"extractors.{modality} says it is a {extractor.modality} one")
            if extractor.feature_dim != wanted[modality]:
                raise ValueError(
                    f"the {modality} extractor gives {extractor.feature_dim}-d features but the "
                    f"window graph takes {wanted[modality]}-d {modality} features"
                )
            if extractor.step.step_seconds != window.step_seconds:
                raise ValueError(
                    f"the {modality} extractor cuts {extractor.step.step_seconds}-s steps but the "
                    f"window graph's steps are {window.step_seconds} s"
                )
        if self.extractors["audio"].step != self.extractors["visual"].step:
            raise ValueError("the audio and visual extractors cut different steps")

    def check(self) -> None:
        """Raise ValueError where the card contradicts itself."""
        self.check_metadata()
        for name in (WINDOW_GRAPH, AUDIO_GRAPH, VISUAL_GRAPH):
            if name not in self.files:
                raise ValueError(f"files does not list {name}")
        if (STEP_GRAPH in self.files) != (self.window.step_hop > 0):
            raise ValueError(
                f"window.step_hop is {self.window.step_hop} but files "
                f"{'lists' if STEP_GRAPH in self.files else 'does not list'} {STEP_GRAPH}"
            )
        for name, entry in self.files.items():
            if name in (
                *WINDOW_GRAPHS.values(),
                *EXTRACTOR_GRAPHS.values(),
                *BATCH_GRAPHS.values(),
            ):
                inputs, outputs = self.expected_signature(name)
                if entry.outputs != outputs or (inputs is not None and entry.inputs != inputs):
                    raise ValueError(
                        f"files.{name} records inputs {entry.inputs} and outputs "
                        f"{entry.outputs}, but the metadata implies "
                        f"{'' if inputs is None else f'inputs {inputs} and '}outputs {outputs}"
                    )


def graph_role(name: str) -> str:
    """ "window", "step", "audio" or "visual": what the graph file ``name`` computes."""
    if name in WINDOW_GRAPHS.values():
        return "window"
    if name in (STEP_GRAPH, OFFLINE_STEP_GRAPH):
        return "step"
    for roles in (EXTRACTOR_GRAPHS, BATCH_GRAPHS):
        for role, graph in roles.items():
            if graph == name:
                return role
    raise ValueError(f"{name} is not a graph of a model directory")


def free_batch(signature: Signature) -> Signature:
    """``signature`` with dim 0 (the batch) of every tensor left free."""
    return {name: [[None, *shape[1:]], dtype] for name, (shape, dtype) in signature.items()}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_graph(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file; ``DamagedFileError`` when it is not one."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DamagedFileError(path, f"not a readable ONNX graph ({problem}); {REEXPORT}") from None


def graph_signature(graph: onnx.ModelProto) -> tuple[Signature, Signature]:
    """(inputs, outputs) of a graph: name -> [shape with None for a free dim, dtype name]."""
    initializers = {t.name for t in graph.graph.initializer}

    def describe(value: onnx.ValueInfoProto) -> list:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        return [dims, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name]

    inputs = {v.name: describe(v) for v in graph.graph.input if v.name not in initializers}
    return inputs, {v.name: describe(v) for v in graph.graph.output}


def loose(signature: Signature) -> Signature:
    """``signature`` with the dims no metadata fixes (candidates N) left free, for comparison."""
    return {
        name: [
            [None if i == 1 and name in ("scores", "segments") else d for i, d in enumerate(shape)],
            dtype,
        ]
        for name, (shape, dtype) in signature.items()
    }


def graph_metadata(graph: onnx.ModelProto) -> dict[str, Any]:
    """The graph's embedded ``loco_stream`` metadata; ``{}`` when it has none."""
    return parse_metadata(
        next((p.value for p in graph.metadata_props if p.key == METADATA_KEY), None)
    )


def as_card_reads(embedded: dict[str, Any]) -> dict[str, Any]:
    """A window graph's embedded metadata read through the card's parser (``WindowInfo``), so
    that optional fields it predates compare at the defaults the card reads them with."""
    if embedded.get("kind") not in ("window", "step"):
        return embedded
    fields = {k: v for k, v in embedded.items() if k not in ("kind", "version")}
    try:
        info = WindowInfo.from_dict(fields)
        return embedded_metadata(info, embedded.get("version", ""), embedded["kind"] == "step")
    except ValueError:
        return embedded  # unreadable: it differs from the card, which is said below


def parse_metadata(text: str | None) -> dict[str, Any]:
    """``loco_stream`` metadata from its JSON text; ``{}`` for none (a user-supplied extractor).
    Raises ValueError when it is not a JSON object."""
    if not text:
        return {}
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"its '{METADATA_KEY}' metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"its '{METADATA_KEY}' metadata is not a JSON object")
    return metadata


def set_graph_metadata(graph: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` as the graph's ``loco_stream`` JSON, replacing any earlier value."""
    kept = [p for p in graph.metadata_props if p.key != METADATA_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata, sort_keys=True))


def file_entry(path: Path) -> FileEntry:
    """The card's entry for a file: its hash, and for an ONNX graph its signature."""
    if path.suffix != ".onnx":
        return FileEntry(sha256_file(path))
    inputs, outputs = graph_signature(load_graph(path))
    return FileEntry(sha256_file(path), inputs, loose(outputs))


def write_card(folder: Path, card: ModelCard) -> Path:
    """Write ``folder/model_card.json`` after checking the card against the files it lists."""
    path = Path(folder) / CARD
    path.write_text(json.dumps(card.to_dict(), indent=1) + "\n", encoding="utf-8")
    read_bundle(folder)  # what was written must read back
    return path


def resolve_dir(path: str | Path | None) -> Path:
    """The model directory ``path``, a packaged model's by its name (``PACKAGED_MODELS``, where no
    folder of that name exists), or the packaged default model for None."""
    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if path is not None and str(path) in PACKAGED_MODELS and not folder.exists():
        folder = PACKAGED_MODELS[str(path)]
    if not folder.is_dir():
        hint = (
            "the package was installed without its default model; reinstall it or pass --model"
            if path is None
            else "pass a directory written by `python -m export`"
        )
        raise MissingFileError(folder, f"no such model directory ({hint})")
    return folder


def read_card(folder: Path) -> ModelCard:
    """The parsed, self-consistent card of ``folder`` (no file checked yet)."""
    path = folder / CARD
    if not path.is_file():
        raise MissingFileError(path, f"missing: not a directory written by export; {REEXPORT}")
    try:
        card = ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
        card.check()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(path, f"not valid JSON ({error}); {REEXPORT}") from None
    except ValueError as error:
        raise MismatchError(path, f"{error}; {REEXPORT}") from None
    return card


def verify_file(folder: Path, card: ModelCard, name: str) -> None:
    """Check one listed file: present, its SHA-256, and for a graph its parse, its signature and
    its embedded metadata against the card."""
    path, entry = folder / name, card.files[name]
    if not path.is_file():
        raise MissingFileError(path, f"missing (model_card.json lists it); {REEXPORT}")
    if sha256_file(path) != entry.sha256:
        raise DamagedFileError(
            path,
            "changed since export (its SHA-256 differs from the one in model_card.json): the "
            f"file is damaged, truncated or was replaced; {REEXPORT}",
        )
    if path.suffix != ".onnx":
        return
    graph = load_graph(path)
    inputs, outputs = graph_signature(graph)
    if inputs != entry.inputs or loose(outputs) != entry.outputs:
        raise MismatchError(
            path,
            f"takes {inputs} and gives {loose(outputs)}, but model_card.json records inputs "
            f"{entry.inputs} and outputs {entry.outputs}; {REEXPORT}",
        )
    try:
        embedded = graph_metadata(graph)
    except ValueError as error:
        raise DamagedFileError(path, f"{error}; {REEXPORT}") from None
    if as_card_reads(embedded) != card.embedded(name):
        raise MismatchError(
            path,
            f"its embedded metadata ({embedded.get('kind', 'no kind')}) differs from "
            f"model_card.json's; {REEXPORT}",
        )


def read_bundle(path: str | Path | None = None, names: list[str] | None = None) -> ModelCard:
    """The verified card of the model directory ``path`` (None: the packaged default model).

    Every file the card lists is checked, or only ``names`` of them (a runtime that opens the
    fp32 window graph need not hash the fp16 one). Raises a ``ModelDirError`` naming the file.
    """
    folder = resolve_dir(path)
    card = read_card(folder)
    verify_files(folder, card, names if names is not None else list(card.files))
    return card


def verify_files(folder: Path, card: ModelCard, names: list[str]) -> None:
    """`verify_file` for each of ``names``, which the card must list."""
    for name in names:
        if name not in card.files:
            raise MissingFileError(folder / name, f"not part of this model directory; {REEXPORT}")
        verify_file(folder, card, name)
