"""Generated music for the background set: a Standard MIDI File with a melody over chords and,
often, drums, from a seed."""

from __future__ import annotations

import struct

import numpy as np


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
