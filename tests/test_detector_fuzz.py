"""Property-based test of the `Detector` API over random, partly malformed pushes.

Whatever frames, audio and timestamps it is given, the detector raises only its documented
errors (`ValueError` for a bad item or setting, `StreamStalled` for a stopped modality), keeps
going after them, and every event it emits has finite, non-negative times in order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loco_stream.model_dir import ModelDir
from loco_stream.stream.detector import Detector
from loco_stream.stream.stitch import Event
from loco_stream.stream.timeline import StreamStalled
from tests.test_stream_support import tiny_model_dir

LOW_THRESHOLD = 0.028  # the random tiny model's scores reach this: events do come out
DOCUMENTED_ERRORS = (ValueError, StreamStalled)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelDir:
    return ModelDir(tiny_model_dir(tmp_path_factory), threads=1)


# A step of the clock: mostly forward by a frame or a block, sometimes back, a jump, or garbage.
clock_steps = st.one_of(
    st.floats(0.0, 0.3),
    st.floats(0.0, 0.3),
    st.floats(-3.0, 0.0),
    st.floats(0.3, 40.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e12, -1e12]),
)
frames = st.builds(
    lambda shape, dtype, value: np.full(shape, value, dtype=dtype),
    st.sampled_from([(24, 32, 3), (24, 32, 3), (0, 0, 3), (24, 32), (3, 24, 32), (1, 1, 3)]),
    st.sampled_from([np.uint8, np.uint8, np.float32]),
    st.integers(0, 255),
)


@st.composite
def audio_blocks(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    length = draw(st.integers(0, 4000))
    channels = draw(st.sampled_from([None, None, 1, 2]))
    rate = draw(st.sampled_from([16000, 16000, 44100, 48000, 8000, 0, -16000, 10**7]))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.int16, np.uint8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    samples = rng.uniform(-0.9, 0.9, length if channels is None else (length, channels))
    if np.issubdtype(dtype, np.integer):  # PCM over most of the dtype's range
        info = np.iinfo(dtype)
        samples = samples * (info.max - info.min) / 2 + (info.max + info.min) / 2
    samples = samples.astype(dtype)
    damage = draw(st.sampled_from([None, None, None, "nan", "inf", "loud", "channels-first"]))
    if damage in ("nan", "inf") and length and np.issubdtype(dtype, np.floating):
        samples.flat[length // 2] = np.nan if damage == "nan" else np.inf
    elif damage == "loud" and np.issubdtype(dtype, np.floating):
        samples = samples * 1000
    elif damage == "channels-first" and samples.ndim == 2:
        samples = samples.T
    return samples, rate


# (kind, clock step, frame, (samples, rate), repeats): a push repeated as a regular run, its
# time advancing by a frame (1/16 s) or by the block's own duration each time
pushes = st.lists(
    st.tuples(
        st.sampled_from(["frame", "audio"]),
        clock_steps,
        frames,
        audio_blocks(),
        st.sampled_from([1, 1, 4, 16, 64]),
    ),
    min_size=1,
    max_size=40,
)


def check_event(event: Event) -> None:
    times = [event.start, event.emitted_at] + ([event.end] if event.type == "end" else [])
    assert all(math.isfinite(t) and t >= 0 for t in times), event
    if event.type == "end":
        assert event.start <= event.end, event
    assert math.isfinite(event.score) and 0 <= event.score <= 1, event


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(origin=st.floats(-1e6, 1e6), pushes=pushes)
def test_any_sequence_of_pushes_gives_documented_errors_and_sane_events(
    tiny: ModelDir, origin: float, pushes: list
) -> None:
    events: list[Event] = []
    detector = Detector(tiny, threshold=LOW_THRESHOLD, on_event=events.append)
    clock = {"frame": origin, "audio": origin}
    for kind, step, frame, (samples, rate), repeats in pushes:
        clock[kind] += step if math.isfinite(step) else 0.0
        advance = 1 / 16 if kind == "frame" else len(samples) / max(rate, 1)
        for k in range(repeats):
            t = clock[kind] + k * advance if math.isfinite(step) else step
            try:
                if kind == "frame":
                    detector.push_frame(frame, t)
                else:
                    detector.push_audio(samples, t, sample_rate=rate)
            except DOCUMENTED_ERRORS:
                pass
        clock[kind] += repeats * advance
    detector.close()
    for event in events:
        check_event(event)
    emitted = [e.emitted_at for e in events]
    assert emitted == sorted(emitted)
    stats = detector.stats
    assert all(
        math.isfinite(v) and v >= 0 for v in vars(stats).values() if isinstance(v, (int, float))
    ), stats
