"""Any overlap of events, any lateness of their records, with or without a frame-rate cap, with
or without CPU for the encoder: each clip shows its whole span from its first moment, sound
included (starved of CPU: a frame every BUDGET_FLOOR_MS at least), and no second of the stream
is encoded twice."""

from __future__ import annotations

import av
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loco_stream.sinks import EvidenceRecorder
from loco_stream.sinks.recording import BUDGET_FLOOR_MS
from loco_stream.sources.base import AudioBlock, VideoFrame
from tests.test_sinks_support import replay_into_evidence

FPS = 16
SECONDS = 30
BLOCK = 368  # audio samples a block, as a file source hands them out


def stream() -> list:
    """SECONDS of small 16-fps frames and a tone, in time order."""
    frames = [
        VideoFrame(k / FPS, np.full((48, 64, 3), 8 * (k % 32), np.uint8))
        for k in range(SECONDS * FPS)
    ]
    tone = (0.2 * np.sin(np.arange(BLOCK) / 3)).astype(np.float32)
    blocks = [AudioBlock(k * BLOCK / 16000, tone, 16000) for k in range(SECONDS * 16000 // BLOCK)]
    return sorted(frames + blocks, key=lambda item: item.t)


ITEMS = stream()

event = st.tuples(
    st.floats(2.0, 18.0),  # start
    st.floats(0.5, 5.0),  # length
    st.floats(0.1, 6.0),  # how late its start record comes
    st.floats(0.1, 3.0),  # how late its end record comes, after its end
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(event, min_size=1, max_size=3),
    pre=st.floats(0.0, 3.0),
    post=st.floats(0.0, 3.0),
    fps=st.sampled_from([None, 8.0]),
    starved=st.booleans(),
)
def test_every_clip_shows_its_span_and_overlaps_are_encoded_once(
    tmp_path_factory, events, pre, post, fps, starved
) -> None:
    folder = tmp_path_factory.mktemp("evidence")
    records, spans = [], {}
    for number, (start, length, start_late, end_late) in enumerate(events):
        end = start + length
        start_at = start + start_late
        end_at = max(end + end_late, start_at)
        records.append({"type": "start", "id": number, "start": start, "emitted_at": start_at})
        records.append(
            {
                "type": "end",
                "id": number,
                "start": start,
                "end": end,
                "peak": start,
                "emitted_at": end_at,
            }
        )
        spans[number] = (max(0.0, start - pre), end + post)
    share = 1e-9 if starved else None  # starved: the budget earns next to nothing
    recorder = EvidenceRecorder(folder, pre=pre, post=post, fps=fps, cpu_percent=share)
    recorder.open()
    counters = replay_into_evidence(recorder, "cam", ITEMS, records)
    updates = {update["id"]: update for _, update in recorder.take_updates()}
    assert counters["failures"] == 0 and counters["clips"] == len(events), counters
    rate = fps or FPS
    shown_frames = 0
    for number, (begin, until) in spans.items():
        with av.open(str(folder / updates[number]["clip"])) as container:
            times = [frame.time for frame in container.decode(video=0)]
            container.seek(0)
            samples = sum(frame.samples for frame in container.decode(audio=0))
        span = until - begin
        sound = samples / 16000
        if starved:  # a frame every BUDGET_FLOOR_MS at least, from its begin to its end; a
            # late clip starts at the frame on show at its begin, so up to that much earlier
            most_apart = BUDGET_FLOOR_MS / 1000 + 1 / rate + 0.01
            assert times[0] < most_apart and span - times[-1] < most_apart, (number, times)
            assert np.diff(times).max(initial=0) < most_apart, (number, times)
            assert -0.2 < sound - span < most_apart + 0.2, (number, sound, span)
        else:
            assert times[0] < 1 / rate + 0.01, (number, times[0])
            assert abs(len(times) - span * rate) <= 2, (number, len(times), span)
            assert abs(sound - span) < 0.2, (number, sound, span)
        shown_frames += len(times)
    assert counters["frames_encoded"] <= shown_frames + 2 * len(events), counters
