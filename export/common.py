"""Helpers shared by the export scripts: an ONNX graph's ``loco_stream`` metadata.

The metadata is a JSON object stored under ``metadata_props["loco_stream"]`` of every exported
graph (classes, step seconds, window, hop, decode thresholds, version). The runtime reads it
from its session; the SHA-256 used in engine sidecars lives in ``loco_stream.runtime.engine_info``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from loco_stream.runtime.base import METADATA_KEY, parse_metadata


def load_graph(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """The model itself, or the model loaded from a path."""
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def read_metadata(model: str | Path | onnx.ModelProto) -> dict[str, Any]:
    """The parsed ``loco_stream`` metadata of a graph; ``{}`` when it has none."""
    graph = load_graph(model)
    text = next((p.value for p in graph.metadata_props if p.key == METADATA_KEY), None)
    return parse_metadata(text, str(model) if not isinstance(model, onnx.ModelProto) else "model")


def write_metadata(model: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` as the graph's ``loco_stream`` JSON, replacing any earlier value."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata, sort_keys=True))
