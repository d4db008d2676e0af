"""`loco-detect --workers N`: clips over worker processes, same results as one process, a failing
clip or a dying worker costs only itself."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loco_stream.cli.detect import main as detect_main
from loco_stream.model_dir import ModelDir
from loco_stream.offline import WORKER_DIED, ModelSpec, detect_clip, map_in_processes
from loco_stream.stream.batched import BatchedModel
from loco_stream.synth import sample_scenario, write_clip
from tests.media import make_clip

DIES_ON = {5, 11}  # items whose worker process dies (os._exit), as a decoder crash would


def square_or_die(item: int, offset: int) -> int:
    """Work run in a worker process: ``item**2 + offset``, or the process dies."""
    if item in DIES_ON:
        os._exit(3)
    return item * item + offset


def test_a_dying_worker_process_costs_only_the_item_it_ran():
    """Two processes, twelve items, two of which kill their process: every other item's result
    comes back exactly once, and only the two are reported, each after a run of its own."""
    outcomes = list(map_in_processes(square_or_die, range(12), 2, extra_args=(100,)))
    items = [item for item, _ in outcomes]
    assert sorted(items) == list(range(12))  # each item exactly once, none lost
    by_item = dict(outcomes)
    for item in range(12):
        expected = WORKER_DIED if item in DIES_ON else item * item + 100
        assert by_item[item] == expected, item


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[Path]:
    """Five short synthetic clips with events, one unreadable file, one without audio."""
    folder = tmp_path_factory.mktemp("archive")
    clips = []
    for index in range(5):
        scenario = sample_scenario(seed=414, index=index, duration=8.0, split="fresh")
        clips.append(folder / f"{scenario.video_id}.mp4")
        write_clip(scenario, clips[-1])
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    silent = make_clip(folder / "silent.mp4", duration=3.0, audio_rate=None)
    return [*clips[:2], garbage, *clips[2:4], silent, clips[4]]


@pytest.mark.slow
def test_workers_write_what_one_process_writes(archive, tmp_path, capsys):
    """The same clips with 1 and 2 workers: identical results file (events, order of ids), the
    same two files skipped with their reasons, exit status 1 for both."""
    written = {}
    for workers in (1, 2):
        output = tmp_path / f"results_{workers}.json"
        code = detect_main(
            [*map(str, archive), "--output", str(output), "--workers", str(workers)]
            + ["--threads", "1"]
        )
        err = capsys.readouterr().err
        assert code == 1, err
        assert "garbage.mp4' could not be read" in err, err
        assert "silent.mp4 has no audio track" in err, err
        written[workers] = output.read_text()
    results = json.loads(written[1])["results"]
    assert list(results) == [p.stem for p in archive if p.stem not in ("garbage", "silent")]
    assert sum(len(entries) for entries in results.values()) >= 5  # real events, not empty lists
    assert written[2] == written[1]


def test_workers_and_threads_must_be_positive(archive, tmp_path, capsys):
    for flag in ("--workers", "--threads"):
        with pytest.raises(SystemExit) as exit_info:
            detect_main([str(archive[0]), "--output", str(tmp_path / "r.json"), flag, "0"])
        assert exit_info.value.code == 2
        assert f"{flag} must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # nargs="?" took a video as the address
        detect_main(["--ray", *map(str, archive[:2]), "--output", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert "put the videos before --ray" in capsys.readouterr().err


@pytest.mark.slow
def test_batched_graphs_detect_what_the_batch1_graphs_detect(batched_dir, tmp_path):
    """A clip of 120 steps through the batched extractors, 32 steps a call, against the batch-1
    extractors step by step: same events (the network: the offline step graph in both)."""
    clip = tmp_path / "long.mp4"
    write_clip(sample_scenario(seed=414, index=9, duration=30.0, split="fresh"), clip)
    assert isinstance(ModelSpec(str(batched_dir), batched=False).open(), ModelDir)
    with ModelSpec(str(batched_dir)).open() as batched:
        assert isinstance(batched, BatchedModel) and batched.batched
        calls = {"features": 0, "windows": 0}
        for name in calls:
            method = getattr(batched, name)

            def counted(*args, _method=method, _name=name):
                calls[_name] += 1
                return _method(*args)

            setattr(batched, name, counted)
        entries, duration = detect_clip(batched, clip)
    with ModelDir(batched_dir, threads=1) as single:
        expected, expected_duration = detect_clip(single, clip)
    assert duration == expected_duration == 30.0
    # 120 steps in 4 calls; the network: the step graph (no window) over the whole clip
    assert calls == {"features": 4, "windows": 0}
    assert len(entries) == len(expected) > 0
    for got, want in zip(entries, expected, strict=True):
        assert got["label_id"] == want["label_id"]
        assert got["segment"] == pytest.approx(want["segment"], abs=2e-3)
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


@pytest.mark.slow
def test_ctrl_c_keeps_the_clips_done_and_stops_the_workers(archive, tmp_path):
    """SIGINT to loco-detect --workers 2 (and its workers, as a terminal's Ctrl-C) once the first
    results are written: exit 130 with a line saying where the clips done are, no traceback.
    Whatever the machine's speed, the run cannot end before the signal: its first input is a
    named pipe that no one writes until the signal was sent (a worker waits on it)."""
    pipe = tmp_path / "live.mp4"
    os.mkfifo(pipe)
    videos = [pipe]
    for clip in archive[:2] + archive[3:5] + archive[6:]:
        videos.append(tmp_path / clip.name)
        shutil.copyfile(clip, videos[-1])
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "loco_stream.cli.detect", *map(str, videos)]
    process = subprocess.Popen(
        [*command, "--output", str(output), "--workers", "2", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600  # a guard against a hang, not a measure
    while not output.exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a reader waiting on the pipe gets its end of file
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # (ENXIO: no reader yet)
        time.sleep(0.05)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    done = len(json.loads(output.read_text())["results"])
    assert 0 < done < len(videos)
    assert f"interrupted: the {done} clip(s) done are in {output}" in err
