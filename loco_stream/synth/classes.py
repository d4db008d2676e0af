"""Media format and event classes of the synthetic benchmark.

Every class has a visual signature (shape, colour, motion) and an audio signature (pitch, timbre,
rhythm). The table is built so that neither modality alone is trivially enough: classes ``2k`` and
``2k+1`` share a colour, classes ``2k-1`` and ``2k`` share a shape, and classes ``i`` and ``i+8``
share a pitch. The joint signature, and each unimodal signature as a whole, is unique per class.

The eight pitches are chosen so that no harmonic up to the 8th of one lies within 3% of another's
fundamental.
"""

from __future__ import annotations

from dataclasses import dataclass

FPS = 16  # video frames per second
FRAME_SIZE = 112  # frames are FRAME_SIZE x FRAME_SIZE RGB
SAMPLE_RATE = 16000  # audio samples per second (mono)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 220, 40),
    "magenta": (220, 50, 210),
    "cyan": (40, 210, 220),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
# Colours of background clutter: dull, and far (> 100 in RGB distance) from every class colour.
CLUTTER_COLOURS: tuple[tuple[int, int, int], ...] = (
    (110, 110, 110),
    (70, 70, 70),
    (115, 75, 45),
    (100, 100, 50),
    (60, 80, 100),
    (100, 60, 90),
    (40, 90, 80),
    (140, 120, 90),
)
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star", "ring", "hexagon")
MOTIONS = ("bounce", "orbit", "pulse", "zigzag", "spin", "hop")
TIMBRES = ("sine", "square", "saw", "fm", "noise")
RHYTHMS = ("steady", "beeps", "tremolo", "pips", "double")


@dataclass(frozen=True)
class EventClass:
    """One audio-visual event class: what it looks like and what it sounds like."""

    label_id: int
    colour: str  # key of COLOURS
    shape: str  # one of SHAPES
    motion: str  # one of MOTIONS
    pitch: float  # fundamental frequency in Hz
    timbre: str  # one of TIMBRES
    rhythm: str  # one of RHYTHMS
    rate: float = 0.0  # rhythm rate in Hz (beeps, tremolo, pips, double); 0 for steady

    def __post_init__(self) -> None:
        for value, allowed in (
            (self.colour, tuple(COLOURS)),
            (self.shape, SHAPES),
            (self.motion, MOTIONS),
            (self.timbre, TIMBRES),
            (self.rhythm, RHYTHMS),
        ):
            if value not in allowed:
                raise ValueError(f"class {self.label_id}: {value!r} is not one of {allowed}")
        if (self.rate > 0) != (self.rhythm != "steady"):
            raise ValueError(f"class {self.label_id}: only a steady rhythm has no rate")

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]

    @property
    def name(self) -> str:
        rhythm = self.rhythm if self.rhythm == "steady" else f"{self.rhythm} {self.rate:g}/s"
        return (
            f"{self.colour} {self.shape} {self.motion} + {self.pitch:g} Hz {self.timbre} {rhythm}"
        )


CLASSES: tuple[EventClass, ...] = (
    EventClass(0, "red", "circle", "bounce", 300, "sine", "beeps", 2.0),
    EventClass(1, "red", "square", "spin", 400, "square", "steady"),
    EventClass(2, "green", "square", "orbit", 470, "saw", "tremolo", 4.0),
    EventClass(3, "green", "triangle", "hop", 570, "fm", "pips", 3.0),
    EventClass(4, "blue", "triangle", "spin", 690, "noise", "steady"),
    EventClass(5, "blue", "diamond", "zigzag", 830, "sine", "double", 1.5),
    EventClass(6, "yellow", "diamond", "pulse", 1030, "square", "beeps", 3.0),
    EventClass(7, "yellow", "cross", "bounce", 1290, "saw", "steady"),
    EventClass(8, "magenta", "cross", "spin", 300, "fm", "steady"),
    EventClass(9, "magenta", "star", "orbit", 400, "sine", "pips", 4.0),
    EventClass(10, "cyan", "star", "hop", 470, "noise", "beeps", 2.0),
    EventClass(11, "cyan", "ring", "pulse", 570, "square", "tremolo", 6.0),
    EventClass(12, "orange", "ring", "zigzag", 690, "saw", "beeps", 4.0),
    EventClass(13, "orange", "hexagon", "bounce", 830, "fm", "tremolo", 3.0),
    EventClass(14, "white", "hexagon", "orbit", 1030, "noise", "pips", 2.0),
    EventClass(15, "white", "circle", "pulse", 1290, "sine", "tremolo", 2.0),
)
NUM_CLASSES = len(CLASSES)


def confusers(label_id: int, modality: str) -> tuple[int, ...]:
    """Classes that share a visual ('visual': colour or shape) or audio ('audio': pitch) cue."""
    cls = CLASSES[label_id]
    if modality == "visual":
        return tuple(
            c.label_id
            for c in CLASSES
            if c.label_id != label_id and (c.colour == cls.colour or c.shape == cls.shape)
        )
    return tuple(c.label_id for c in CLASSES if c.label_id != label_id and c.pitch == cls.pitch)
