"""Every command's ``--help``: each option explained with its default, and printed before anything
heavy (torch, ONNX Runtime, OpenCV, PyAV) is imported, so it comes at once."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnxruntime", "cv2", "av")
COMMANDS = {  # pyproject.toml's [project.scripts], and python -m export
    "loco-stream": "loco_stream.cli.stream:main",
    "loco-detect": "loco_stream.cli.detect:main",
    "loco-eval": "loco_stream.cli.eval:main",
    "loco-synth": "loco_stream.cli.synth:main",
    "loco-train": "train.pipeline:main",
    "python -m export": "export",
}
# Runs one command with --help and prints, as JSON, its options (from the parser that printed the
# help) and the heavy modules imported by then.
PROBE = """
import argparse, importlib, json, runpy, sys

target, heavy = sys.argv[1], sys.argv[2].split(",")
options = []

def record(parser, file=None):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        options.append({
            "name": "/".join(action.option_strings) or action.dest,
            "help": action.help or "",
            "takes_value": action.nargs != 0,
            "required": action.required or not action.option_strings,
        })

argparse.ArgumentParser.print_help = record
sys.argv = [target, "--help"]
try:
    if ":" in target:
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)()
    else:
        runpy.run_module(target, run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"options": options, "heavy": [name for name in heavy if name in sys.modules]}))
"""


def help_of(target: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, target, ",".join(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_commands_are_those_installed() -> None:
    tomllib = pytest.importorskip(
        "tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib"
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    installed = {name: target for name, target in COMMANDS.items() if " " not in name}
    assert project["scripts"] == installed


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_nothing_heavy(command: str) -> None:
    found = help_of(COMMANDS[command])
    assert found["options"], f"{command} --help printed no options"
    assert found["heavy"] == [], f"{command} --help imported {found['heavy']}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_explained_with_its_default(command: str) -> None:
    for option in help_of(COMMANDS[command])["options"]:
        assert option["help"].strip(), f"{command} {option['name']} has no help text"
        if option["takes_value"] and not option["required"]:
            assert "default" in option["help"], f"{command} {option['name']}: no default said"


def test_the_defaults_shown_are_the_librarys() -> None:
    from export.__main__ import DEFAULT_HOP_STEPS as export_hop
    from loco_stream import defaults
    from loco_stream.bundle import DEFAULT_HOP_STEPS
    from loco_stream.runtime import BACKENDS
    from loco_stream.sinks.evidence import EvidenceRecorder
    from loco_stream.sinks.live_page import DEFAULT_ADDRESS
    from loco_stream.stream.stitch import DEFAULT_THRESHOLD
    from train.extractor_sets import SETS, TIMINGS
    from train.pipeline import SET_TIMINGS, SHIPPED_EXTRACTOR_SETS

    assert defaults.BACKENDS == BACKENDS
    assert defaults.DEFAULT_THRESHOLD == DEFAULT_THRESHOLD
    assert defaults.LIVE_PAGE_ADDRESS == DEFAULT_ADDRESS
    evidence = inspect.signature(EvidenceRecorder).parameters
    shown = (
        defaults.EVIDENCE_PRE_SECONDS,
        defaults.EVIDENCE_POST_SECONDS,
        defaults.EVIDENCE_MAX_MB,
        defaults.EVIDENCE_WIDTH,
    )
    assert shown == tuple(evidence[name].default for name in ("pre", "post", "max_mb", "width"))
    assert list(SHIPPED_EXTRACTOR_SETS) == sorted(SETS)
    assert SET_TIMINGS == tuple(TIMINGS)
    assert export_hop == DEFAULT_HOP_STEPS
