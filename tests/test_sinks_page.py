"""The live page in a real headless chromium (Debian's, driven by selenium through Debian's
chromium-driver): it loads, each event appears as its records come, its snapshot renders, its
clip plays for its length.

``LOCO_SCREENSHOT=1`` also saves the page's screenshot as docs/images/monitoring_page.png."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import av
import pytest

from loco_stream.sinks import EvidenceRecorder, LivePage
from loco_stream.stream import MultiDetector
from loco_stream.synth import render_audio, render_frame, sample_scenario
from tests.test_sinks_support import wait_for
from tests.test_stream_support import real_model_dir

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "monitoring_page.png"
FPS = 16
STREAMS = {"door": 20.0, "hall": 16.0}  # demo scenario 334 at two lengths: two events each


@pytest.fixture
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "chromium or chromedriver is missing (Debian: apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1000,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def rows(browser, stream: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f'section[data-stream="{stream}"] tr.event')


def snapshots_shown(browser) -> int:
    """Snapshots loaded and decoded by the browser."""
    script = (
        "return [...document.querySelectorAll('img.snapshot')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )
    return browser.execute_script(script)


def clip_durations(browser) -> dict[str, float] | None:
    """Each clip's length as the browser plays it, by its path under the evidence folder (None
    until all four are known)."""
    script = (
        "return Object.fromEntries([...document.querySelectorAll('video')]"
        ".map(v => [v.getAttribute('src').replace('/evidence/', ''), v.duration]))"
    )
    durations = browser.execute_script(script)
    known = {clip: seconds for clip, seconds in durations.items() if seconds}
    return known if len(known) == 4 else None


def clip_seconds(path: Path) -> float:
    """How long the clip's frames are shown, as FFmpeg reads it."""
    with av.open(str(path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    return times[-1] + 1 / FPS


def test_the_page_shows_each_event_as_it_comes_with_its_snapshot(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, browser
) -> None:
    model = real_model_dir(tmp_path_factory)
    folder = tmp_path / "evidence"
    page = LivePage("127.0.0.1:0", evidence_folder=folder)
    emitted: list[tuple[float, str, str]] = []  # (monotonic time, stream, type)
    detector = MultiDetector(
        model,
        on_event=lambda item: emitted.append((time.monotonic(), item.stream, item.event.type)),
        sinks=[EvidenceRecorder(folder), page],
    )
    scenes = {
        name: sample_scenario(334, 0, seconds, split="demo") for name, seconds in STREAMS.items()
    }
    for name in scenes:
        detector.add_stream(name)
    try:
        browser.get(page.url)
        wait_for(lambda: browser.find_element("id", "status").text == "live", "the page's stream")
        frames = round(max(STREAMS.values()) * FPS)
        for k in range(frames):
            t = k / FPS
            for name, scene in scenes.items():
                if t < scene.duration:
                    detector.push_frame(name, render_frame(scene, t), t)
                    detector.push_audio(name, render_audio(scene, 16000, t, t + 1 / FPS), t)
            if len(emitted) == 1 and emitted[0][2] == "start":  # the first record: measure
                stream = emitted[0][1]
                wait_for(lambda s=stream: rows(browser, s), "the first event on the page")
                latency = time.monotonic() - emitted[0][0]
                print(f"first event on the page {latency:.2f} s after its record")
                emitted.append((0.0, "", "measured"))
        for name in scenes:
            wait_for(lambda n=name: len(rows(browser, n)) == 2, f"two events of {name}")
        wait_for(lambda: snapshots_shown(browser) == 4, "the four snapshots rendered")
        durations = wait_for(lambda: clip_durations(browser), "the four clips' lengths")
        for clip, shown in durations.items():  # an edit list hides what precedes a late clip
            assert abs(shown - clip_seconds(folder / clip)) < 0.2, (clip, shown)
        browser.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("LOCO_SCREENSHOT"):
            shutil.copy(tmp_path / "page.png", SCREENSHOT)
    finally:
        detector.close()
