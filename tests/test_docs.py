"""The README and docs/ as a user reads them.

- Every relative link `[text](path#anchor)` names a file that exists, and every anchor a heading
  of its target (GitHub's slugs).
- Every Python block compiles; a block marked `<!-- runnable -->` on the line before its
  ```` ```python ```` runs: in a fresh folder that holds `clip.mp4` (a 20-s synthetic clip with
  two events of the default model's classes), in its own process, and must exit 0; a block that
  reads `clip.mp4` must print both events' labels.
- Every option shown after one of the command lines (`loco-stream --hop 4`, ...) is one its
  `--help` lists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = "<!-- runnable -->"
CLIP = "clip.mp4"  # what a runnable block finds in its folder
RUN_TIMEOUT = 180  # s, one runnable block


@dataclass
class Block:
    page: Path
    line: int  # of its first code line, 1-based
    lang: str
    code: str
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_and_prose(page: Path) -> tuple[list[Block], list[tuple[int, str]]]:
    """A page's fenced code blocks, and its other lines (numbered) with inline code removed."""
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    lines = page.read_text().splitlines()
    fence: tuple[int, str, bool] | None = None  # (first code line, language, runnable)
    code: list[str] = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            previous = lines[number - 2].strip() if number > 1 else ""
            fence, code = (number + 1, stripped[3:].strip(), previous == RUNNABLE), []
        elif fence is not None and stripped.startswith("```"):
            blocks.append(Block(page, fence[0], fence[1], _dedent(code), fence[2]))
            fence = None
        elif fence is not None:
            code.append(line)
        else:
            prose.append((number, line))
    assert fence is None, f"{page.name}: a code block opened at line {fence[0] - 1} never closes"
    return blocks, prose


def _dedent(lines: list[str]) -> str:
    """Code of a fenced block, its common indentation (a block in a list item) removed."""
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines) + "\n"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lowercase, without punctuation but - and _,
    spaces as -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (a repeated one gets -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in blocks_and_prose(page)[1]:
        heading = re.match(r"#{1,6} +(.*?)#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image of a page outside code."""
    found = []
    for number, line in blocks_and_prose(page)[1]:
        line = re.sub(r"`[^`]*`", "", line)
        found += [(number, target) for target in LINK.findall(line)]
    return found


def test_the_pages_are_the_readme_and_docs() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "embedding.md", "performance.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    wrong = []
    for number, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            wrong.append(f"line {number}: {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            wrong.append(f"line {number}: {target}: no heading of {file.name} has this anchor")
    assert not wrong, f"{page.relative_to(ROOT)}:\n" + "\n".join(wrong)


def python_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks_and_prose(page)[0] if b.lang == "python"]


def test_every_python_block_compiles() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        compile(block.code, block.where, "exec")


def test_the_runnable_blocks_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    from loco_stream.synth import sample_scenario, write_clip

    runnable: dict[str, Block] = {}
    for block in python_blocks():  # one run of each different block
        if block.runnable:
            runnable.setdefault(block.code, block)
    assert any(block.page.name == "README.md" for block in runnable.values())
    scenario = sample_scenario(seed=334, index=0, duration=20.0, split="demo")
    media = tmp_path_factory.mktemp("media")
    write_clip(scenario, media / CLIP)
    from loco_stream.model_dir import ModelDir

    with ModelDir() as model:  # the packaged default model, which the blocks open
        labels = [model.info.classes[label] for _, _, label in scenario.events]
    for block in runnable.values():
        folder = tmp_path_factory.mktemp("block")
        (folder / CLIP).symlink_to(media / CLIP)
        (folder / "block.py").write_text(block.code)
        done = subprocess.run(
            [sys.executable, "block.py"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
        if CLIP in block.code:
            for label in labels:
                assert label in done.stdout, f"{block.where} did not find {label!r}:\n{done.stdout}"


# ---- the options the pages show ----

SCRIPTS = Path(sys.executable).parent  # where pip installed the package's commands
COMMANDS = {  # a command as the pages write it: how to ask it for --help
    "loco-stream": [str(SCRIPTS / "loco-stream")],
    "loco-detect": [str(SCRIPTS / "loco-detect")],
    "loco-eval": [str(SCRIPTS / "loco-eval")],
    "loco-synth": [str(SCRIPTS / "loco-synth")],
    "loco-train": [str(SCRIPTS / "loco-train")],
    "python -m export": [sys.executable, "-m", "export"],
    "python export/to_trt.py": [sys.executable, "export/to_trt.py"],
}
COMMAND = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(c) for c in COMMANDS) + r")(?![\w-])")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def command_texts(page: Path) -> list[tuple[int, str]]:
    """(line, text) of what a page shows as code: each line of a code block (fenced, or
    indented 4 spaces) with the lines a trailing backslash continues it on, and each inline
    code span of the other lines."""
    lines = page.read_text().splitlines()
    texts: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(lines, 1):
        if line.strip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            more = number
            while line.rstrip().endswith("\\") and more < len(lines):
                line, more = line.rstrip()[:-1] + " " + lines[more], more + 1
            texts.append((number, line))
        else:
            texts += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return texts


def shown_options() -> dict[str, dict[str, str]]:
    """command -> {option: where} for every option written after a command, up to a shell
    separator or a comment."""
    shown: dict[str, dict[str, str]] = {command: {} for command in COMMANDS}
    for page in PAGES:
        for number, text in command_texts(page):
            for match in COMMAND.finditer(text):
                rest = re.split(r"\s(?:#|&&|\|\|?|;)", text[match.end() :])[0]
                for option in OPTION.findall(rest):
                    shown[match.group(1)].setdefault(option, f"{page.relative_to(ROOT)}:{number}")
    return shown


def test_every_option_shown_exists() -> None:
    shown = {command: options for command, options in shown_options().items() if options}
    assert {"loco-stream", "loco-detect", "loco-train", "python -m export"} <= set(shown)
    running = {
        command: subprocess.Popen(
            [*COMMANDS[command], "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in shown
    }
    wrong = []
    for command, process in running.items():
        helped = set(OPTION.findall(process.communicate(timeout=120)[0]))
        assert process.returncode == 0, f"{command} --help failed"
        wrong += [
            f"{where}: {command} {option}"
            for option, where in shown[command].items()
            if option not in helped
        ]
    assert not wrong, "options the pages show that the commands do not have:\n" + "\n".join(wrong)
