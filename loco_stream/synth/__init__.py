"""Synthetic audio-visual event benchmark: scenarios, rendering, and mp4 + UnAV-style annotations.

Usage:

scenario = sample_scenario(seed=0, index=3)   # timeline and ground truth, nothing rendered
for t, frame in render_frames(scenario): ...  # (s, 112x112x3 uint8 RGB) at 16 fps
audio = render_audio(scenario)                # float32 mono in [-1, 1] at 16 kHz
generate_dataset("data/synth", 100, seed=0, split="train")  # mp4s + annotations.json
"""

from loco_stream.synth.classes import CLASSES, FPS, FRAME_SIZE, SAMPLE_RATE, EventClass
from loco_stream.synth.render import render_audio, render_frame, render_frames
from loco_stream.synth.scenario import Scenario, sample_scenario
from loco_stream.synth.writer import annotation_entry, generate_dataset, write_clip

__all__ = [
    "CLASSES",
    "FPS",
    "FRAME_SIZE",
    "SAMPLE_RATE",
    "EventClass",
    "Scenario",
    "annotation_entry",
    "generate_dataset",
    "render_audio",
    "render_frame",
    "render_frames",
    "sample_scenario",
    "write_clip",
]
