"""A list of streams from a YAML file (``loco-stream --sources streams.yaml``) or the command line.

    streams:                      # or the list itself at the top level
      - name: door                # 1-64 letters, digits, '.', '_', '-'; names DIR/door.jsonl
        file: videos/door.mp4     # a video file with audio (relative to the YAML's folder)
        threshold: 0.4            # optional: this stream's minimum event score
        realtime: true            # optional: pace the file at real time
      - name: hall
        camera: 0                 # a camera index, device, URL or pipe...
        microphone: default       # ...with a microphone name or index
        reconnect: true           # optional: reopen the pair when either stops

The file is read with ``yaml.safe_load``; every problem is one `StreamListError` naming the file,
the stream (by position and name) and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .lane import StreamSpec
from .stitch import DEFAULT_THRESHOLD

KEYS = ("name", "file", "camera", "microphone", "threshold", "realtime", "reconnect")
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class StreamListError(ValueError):
    """A stream list that cannot be used; the message says where and why."""


def read_stream_list(
    path: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    realtime: bool = False,
    reconnect: bool = False,
) -> list[StreamSpec]:
    """The streams of a YAML stream list; ``threshold``, ``realtime`` and ``reconnect`` are the
    defaults of streams that do not set them."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StreamListError(f"cannot read stream list {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise StreamListError(f"stream list {path} is not valid YAML: {error}") from None
    if isinstance(raw, dict) and set(raw) == {"streams"}:
        raw = raw["streams"]
    if not isinstance(raw, list) or not raw:
        raise StreamListError(
            f"stream list {path} must be a non-empty list of streams (or 'streams:' with one)"
        )
    defaults = {"threshold": threshold, "realtime": realtime, "reconnect": reconnect}
    specs = [_spec(entry, number, path, defaults) for number, entry in enumerate(raw, 1)]
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise StreamListError(f"stream list {path}: stream names repeat: {', '.join(repeated)}")
    return specs


def _spec(entry: Any, number: int, path: Path, defaults: dict[str, Any]) -> StreamSpec:
    where = f"stream list {path}, stream {number}"
    if not isinstance(entry, dict):
        raise StreamListError(f"{where}: must be a mapping of {', '.join(KEYS)}")
    if isinstance(entry.get("name"), str):
        where += f" ('{entry['name']}')"
    unknown = sorted(str(key) for key in set(entry) - set(KEYS))
    if unknown:
        raise StreamListError(f"{where}: unknown key(s) {unknown}; a stream has {list(KEYS)}")
    if "name" not in entry:
        raise StreamListError(f"{where}: lacks 'name'")
    for key in ("realtime", "reconnect"):
        if key in entry and not isinstance(entry[key], bool):
            raise StreamListError(f"{where}: '{key}' must be true or false")
    file = entry.get("file")
    if file is not None:
        if not isinstance(file, str):
            raise StreamListError(f"{where}: 'file' must be a path")
        file = path.parent / Path(file).expanduser()
    values = {**defaults, **{k: v for k, v in entry.items() if k in defaults}}
    try:
        return StreamSpec(
            name=entry["name"],
            input=file,
            camera=None if entry.get("camera") is None else str(entry["camera"]),
            microphone=None if entry.get("microphone") is None else str(entry["microphone"]),
            **values,
        )
    except ValueError as error:
        raise StreamListError(f"{where}: {error}") from None


def unique_names(wanted: list[str]) -> list[str]:
    """Stream names from ``wanted`` (file stems, say): unsafe characters replaced by '_', cut to
    64 characters, repeats numbered (``clip``, ``clip-2``, ...)."""
    names: list[str] = []
    for text in wanted:
        base = UNSAFE.sub("_", text)[:60].lstrip("._-") or "stream"
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names
