"""The model directory format (loco_stream/bundle.py): what python -m export writes reads back, and
every damaged, swapped or contradicted file is refused in one line that names it, by the API and
by both command-line tools (exit 1)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from loco_stream.bundle import (
    AUDIO_GRAPH,
    CARD,
    DEFAULT_MODEL_DIR,
    OFFLINE_STEP_GRAPH,
    PACKAGED_MODELS,
    STEP_GRAPH,
    VISUAL_GRAPH,
    WINDOW_GRAPH,
    DamagedFileError,
    MismatchError,
    MissingFileError,
    ModelCard,
    ModelDirError,
    read_bundle,
    resolve_dir,
)
from loco_stream.model_dir import ModelDir

ROOT = Path(__file__).resolve().parents[1]


def edit_card(folder: Path, change: Callable[[dict], None]) -> None:
    card = json.loads((folder / CARD).read_text())
    change(card)
    (folder / CARD).write_text(json.dumps(card))


def overwrite_4kb(folder: Path) -> None:
    path = folder / WINDOW_GRAPH
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = np.random.default_rng(0).bytes(4096)
    path.write_bytes(bytes(data))


def truncate(folder: Path) -> None:
    path = folder / WINDOW_GRAPH
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def not_onnx(folder: Path) -> None:
    (folder / WINDOW_GRAPH).write_text("this is a text file, not a graph\n")


def swap_extractor(folder: Path) -> None:
    shutil.copyfile(folder / VISUAL_GRAPH, folder / AUDIO_GRAPH)


def wrong_dims(folder: Path) -> None:
    edit_card(folder, lambda card: card["window"]["model"].update(visual_dim=999))


def wrong_recorded_signature(folder: Path) -> None:
    def change(card: dict) -> None:
        card["files"][WINDOW_GRAPH]["inputs"]["visual"][0] = [1, 32, 999]
        card["window"]["model"]["visual_dim"] = 999
        card["extractors"]["visual"]["feature_dim"] = 999
        card["files"][VISUAL_GRAPH]["outputs"]["features"][0] = [1, 999]

    edit_card(folder, change)


def bad_json(folder: Path) -> None:
    (folder / CARD).write_text('{"format": 1, "window": ')


def missing_card(folder: Path) -> None:
    (folder / CARD).unlink()


def unknown_step_field(folder: Path) -> None:
    edit_card(folder, lambda card: card["extractors"]["audio"]["step"].update(lens="fisheye"))


def missing_step_field(folder: Path) -> None:
    edit_card(folder, lambda card: card["extractors"]["visual"]["step"].pop("frame_size"))


# damage -> (its error type, the file the message starts with, words it contains)
CASES = {
    "4 KB overwritten": (overwrite_4kb, DamagedFileError, WINDOW_GRAPH, "changed since export"),
    "truncated": (truncate, DamagedFileError, WINDOW_GRAPH, "changed since export"),
    "not ONNX": (not_onnx, DamagedFileError, WINDOW_GRAPH, "changed since export"),
    "swapped extractor": (swap_extractor, DamagedFileError, AUDIO_GRAPH, "replaced"),
    "card with wrong dims": (wrong_dims, MismatchError, CARD, "takes 999-d visual"),
    "card and graph disagree": (wrong_recorded_signature, MismatchError, WINDOW_GRAPH, "999"),
    "card not JSON": (bad_json, DamagedFileError, CARD, "not valid JSON"),
    "card missing": (missing_card, MissingFileError, CARD, "missing"),
    "unknown step field": (unknown_step_field, MismatchError, CARD, "unknown key(s) ['lens']"),
    "missing step field": (missing_step_field, MismatchError, CARD, "lacks key(s) ['frame_size']"),
}


@pytest.fixture
def copy_of_tiny(tiny_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_the_exported_card_reads_back_and_describes_the_graphs(tiny_model_dir: Path):
    card = read_bundle(tiny_model_dir)
    assert ModelCard.from_dict(json.loads((tiny_model_dir / CARD).read_text())) == card
    assert ModelCard.from_dict(card.to_dict()) == card
    assert card.window.visual_dim == card.extractors["visual"].feature_dim == 8
    assert card.files[WINDOW_GRAPH].inputs["mask"] == [[1, 32], "float32"]
    assert set(card.files) == {
        WINDOW_GRAPH,
        STEP_GRAPH,
        OFFLINE_STEP_GRAPH,
        AUDIO_GRAPH,
        VISUAL_GRAPH,
        "loco.pt",
        "extractors.pt",
    }
    with ModelDir(tiny_model_dir) as model:
        assert model.info == card.window and model.spec == card.extractors["audio"].step


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_or_mismatched_directory_is_one_line_naming_the_file(copy_of_tiny, case):
    damage, error_type, file_name, words = CASES[case]
    damage(copy_of_tiny)
    with pytest.raises(error_type) as caught:
        ModelDir(copy_of_tiny)
    message = str(caught.value)
    assert message.startswith(str(copy_of_tiny / file_name) + ": "), message
    assert words in message and "\n" not in message
    assert caught.value.path == copy_of_tiny / file_name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["4 KB overwritten", "truncated", "not ONNX", "swapped extractor"])
@pytest.mark.parametrize("tool", ["loco_stream.cli.stream", "loco_stream.cli.detect"])
def test_both_tools_exit_1_with_one_line_naming_the_file(copy_of_tiny, clip, tmp_path, tool, case):
    damage, _, file_name, _ = CASES[case]
    damage(copy_of_tiny)
    output = ["--output", str(tmp_path / ("out.jsonl" if tool.endswith("stream") else "r.json"))]
    source = ["--input", str(clip)] if tool.endswith("stream") else [str(clip)]
    done = subprocess.run(
        [sys.executable, "-m", tool, *source, "--model", str(copy_of_tiny), *output],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{copy_of_tiny / file_name}: " in lines[0], done.stderr


def test_card_with_wrong_dims_stops_loco_detect_with_exit_1(copy_of_tiny, clip, tmp_path):
    wrong_dims(copy_of_tiny)
    done = subprocess.run(
        [sys.executable, "-m", "loco_stream.cli.detect", str(clip)]
        + ["--model", str(copy_of_tiny), "--output", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{copy_of_tiny / CARD}: " in done.stderr and "999" in done.stderr


def test_a_precision_that_was_not_exported_is_named(tiny_model_dir: Path):
    with pytest.raises(MissingFileError, match=r"loco_fp16\.onnx: not part of this model"):
        ModelDir(tiny_model_dir, precision="fp16")


def test_torch_backend_runs_the_checkpoint_beside_the_graphs(tiny_model_dir: Path):
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 32), np.float32)
    mask[0, :20] = 1.0
    inputs = (
        rng.standard_normal((1, 32, 8), dtype=np.float32),
        rng.standard_normal((1, 32, 8), dtype=np.float32),
        mask,
    )
    with ModelDir(tiny_model_dir) as onnx_model, ModelDir(tiny_model_dir, "torch") as torch_model:
        assert torch_model.description.endswith(")") and "torch" in torch_model.description
        for ours, theirs in zip(
            torch_model.run_window(*inputs), onnx_model.run_window(*inputs), strict=True
        ):
            np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_torch_backend_refuses_a_checkpoint_of_another_model(copy_of_tiny: Path, tmp_path: Path):
    from tiny_model import save_tiny_checkpoints

    other, _ = save_tiny_checkpoints(tmp_path / "other", seed=1)
    shutil.copyfile(other, copy_of_tiny / "loco.pt")
    with pytest.raises(DamagedFileError, match=r"loco\.pt: changed since export"):
        ModelDir(copy_of_tiny, "torch")


def test_torch_backend_names_a_missing_checkpoint(copy_of_tiny: Path):
    (copy_of_tiny / "loco.pt").unlink()
    edit_card(copy_of_tiny, lambda card: card["files"].pop("loco.pt"))
    with pytest.raises(MissingFileError, match=r"loco\.pt: the torch backend runs the checkpoint"):
        ModelDir(copy_of_tiny, "torch")
    ModelDir(copy_of_tiny).close()  # the graphs alone still make a model directory


def test_packaging_leaves_the_torch_checkpoints_out_and_the_graphs_run(
    tiny_model_dir: Path, tmp_path: Path
):
    from train.efficientnet_model import package

    package(tiny_model_dir, tmp_path / "packaged")
    assert not (tmp_path / "packaged" / "loco.pt").exists()
    assert not (tmp_path / "packaged" / "extractors.pt").exists()
    card = read_bundle(tmp_path / "packaged")  # every file it lists is there and unchanged
    assert "loco.pt" not in card.files and WINDOW_GRAPH in card.files
    with ModelDir(tmp_path / "packaged") as packaged, ModelDir(tiny_model_dir) as original:
        assert packaged.info == original.info
    with pytest.raises(MissingFileError, match=r"loco\.pt: the torch backend runs the checkpoint"):
        ModelDir(tmp_path / "packaged", "torch")


def test_a_packaged_model_is_named_unless_a_folder_has_that_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_dir("default") == DEFAULT_MODEL_DIR == resolve_dir(None)
    assert resolve_dir(Path("efficientnet")) == PACKAGED_MODELS["efficientnet"]
    (tmp_path / "default").mkdir()
    assert resolve_dir("default") == Path("default")  # the user's own folder comes first
    with pytest.raises(MissingFileError, match="no such model directory"):
        resolve_dir("efficientnet-v2")


def test_the_runtime_opens_a_model_directory_without_torch(tiny_model_dir: Path):
    script = (
        "import sys; from loco_stream.model_dir import ModelDir; "
        f"ModelDir({str(tiny_model_dir)!r}).close(); "
        "print(sorted(m for m in ('torch', 'train', 'export') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_the_package_imports_nothing_from_train_or_export():
    offenders = []
    for path in (ROOT / "loco_stream").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("train", "export")
            ]
    assert offenders == []


def test_errors_are_model_dir_errors_for_callers_that_catch_one_type():
    assert all(issubclass(case[1], ModelDirError) for case in CASES.values())
