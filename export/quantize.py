"""INT8 by explicit quantization: Q/DQ nodes in the window graph, calibrated on feature windows.

    loco_int8.onnx = quantize(loco.onnx, windows cut from the features of calibration videos)

ONNX Runtime's static quantizer (``onnxruntime.quantization.quantize_static``) writes QDQ format:
QuantizeLinear/DequantizeLinear pairs around the MatMul, Conv and Gemm inputs, int8 with zero
points of 0 (symmetric activations and weights, which TensorRT requires of Q/DQ), scales from
min/max calibration. One graph then serves both runtimes: ONNX Runtime runs it on the CPU (so its
accuracy and speed are measured anywhere) and TensorRT builds it as an explicitly quantized,
strongly typed network, the only INT8 path TensorRT 11 keeps. The calibration windows are cut
from whole videos by the directory's own extractors, exactly as offline detection cuts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from tqdm import tqdm

from loco_stream.bundle import set_graph_metadata
from loco_stream.features.media import MediaError, extract_file
from loco_stream.model_dir import StepExtractors
from loco_stream.offline import window_starts

QUANTIZED_OPS = ["MatMul", "Conv", "Gemm"]  # the arithmetic; norms, softmax and heads stay float
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")

Window = dict[str, np.ndarray]  # visual (1,T,Dv), audio (1,T,Da), mask (1,T)


class CalibrationError(ValueError):
    """Calibration videos that are missing or give no features; the message says which."""


def calibration_videos(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` video files of ``folder``, in name order."""
    if not folder.is_dir():
        raise CalibrationError(f"--calib {folder} is not a directory of videos")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise CalibrationError(f"--calib {folder} holds no video ({', '.join(VIDEO_SUFFIXES)})")
    return videos[:limit]


def feature_windows(visual: np.ndarray, audio: np.ndarray, window: int) -> Iterator[Window]:
    """The windows offline detection runs over one clip's features (L, Dv) and (L, Da)."""
    length = min(len(visual), len(audio))
    for start in window_starts(length, window):
        stop = min(start + window, length)
        cut = {
            "visual": np.zeros((1, window, visual.shape[1]), np.float32),
            "audio": np.zeros((1, window, audio.shape[1]), np.float32),
            "mask": np.zeros((1, window), np.float32),
        }
        cut["visual"][0, : stop - start] = visual[start:stop]
        cut["audio"][0, : stop - start] = audio[start:stop]
        cut["mask"][0, : stop - start] = 1.0
        yield cut


def calibration_windows(
    model_dir: Path, videos: list[Path], window: int, threads: int = 2
) -> list[Window]:
    """Feature windows of ``videos``, computed by the extractors of ``model_dir``."""
    extractors = StepExtractors(model_dir, threads=threads)
    windows: list[Window] = []
    try:
        for video in tqdm(videos, desc="calibration features", unit="clip", leave=False):
            try:
                visual, audio = extract_file(video, extractors.spec, extractors)
            except MediaError as error:
                tqdm.write(f"      skipped {video.name}: {error}")
                continue
            windows.extend(feature_windows(visual, audio, window))
    finally:
        extractors.close()
    if not windows:
        raise CalibrationError(f"none of the {len(videos)} calibration videos gave features")
    return windows


class _Windows(CalibrationDataReader):
    def __init__(self, windows: list[Window]) -> None:
        self._windows = iter(windows)

    def get_next(self) -> Window | None:
        return next(self._windows, None)


def quantize_window_graph(
    source: Path, target: Path, windows: list[Window], metadata: dict, say: Callable = print
) -> Path:
    """Write ``target``: ``source`` with int8 Q/DQ nodes calibrated on ``windows``."""
    # the quantizer advises its shape-inference pre-pass on every call; the exported graph has
    # static shapes throughout and the exporter's optimiser has already run
    quantizer_log = logging.getLogger()
    level = quantizer_log.level
    quantizer_log.setLevel(logging.ERROR)
    try:
        _quantize(source, target, windows)
    finally:
        quantizer_log.setLevel(level)
    graph = onnx.load(str(target))
    set_graph_metadata(graph, metadata)  # the quantizer keeps only what it knows
    onnx.save(graph, str(target))
    pairs = sum(node.op_type == "QuantizeLinear" for node in graph.graph.node)
    say(f"      {target} ({target.stat().st_size / 2**20:.1f} MiB, {pairs} Q/DQ pairs)")
    return target


def _quantize(source: Path, target: Path, windows: list[Window]) -> None:
    quantize_static(
        str(source),
        str(target),
        _Windows(windows),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTIZED_OPS,
        per_channel=False,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
