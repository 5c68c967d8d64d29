"""A small detection dataset that ships with the explorer: drawn, not downloaded.

``make_dataset(out)`` writes the tutorial's KITTI-tiny layout::

    out/training/image_2/000000.png ...   RGB images, 256 x 256 by default
    out/training/label_2/000000.txt ...   one KITTI line per object
    out/train.txt, out/val.txt            image ids, 80 % / 20 %
    out/classes.txt                       Car, Pedestrian, Cyclist

The classes are the tutorial's, drawn as simple cartoons a learner tells apart by shape and
colour: a *Car* is a wide body with a window and two wheels (aspect w / h about 2), a
*Pedestrian* a tall figure (about 0.4), a *Cyclist* a figure over a bicycle (about 1). Their
colours come from separate hue ranges (red-orange, blue, green) so a randomly initialised
detector can learn them within minutes on a CPU. Backgrounds are smooth two-colour gradients
with a road band and noise, in muted colours; some images hold a grey ``DontCare`` block (the
KITTI reader keeps it as an ignored box, as the tutorial does) and some hold no object at all.

Everything follows from ``seed``: the same arguments write byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("Car", "Pedestrian", "Cyclist")
# Hue ranges (OpenCV hue, 0-179) per class: red-orange, blue, green; far apart on purpose.
HUES = {"Car": (0, 12), "Pedestrian": (105, 120), "Cyclist": (50, 70)}
# Box height ranges in pixels at the default 256 x 256, scaled with the image's shorter side.
HEIGHTS = {"Car": (28, 60), "Pedestrian": (48, 96), "Cyclist": (44, 84)}
ASPECTS = {"Car": (1.7, 2.3), "Pedestrian": (0.35, 0.5), "Cyclist": (0.85, 1.15)}
MAX_OBJECTS = 4
MAX_IMAGES = 20_000
MAX_SIDE = 2048


@dataclass(frozen=True)
class SyntheticSettings:
    """What :func:`make_dataset` draws.

    Attributes:
        images: number of images (train + val).
        width, height: image size in pixels.
        val_fraction: share of images listed in ``val.txt`` (the rest in ``train.txt``).
        seed: seed of every random choice.
        object_scale: object sizes relative to the default (which scales them with the image's
            shorter side); 2 on 128 x 128 images draws objects as large as on 256 x 256.
    """

    images: int = 200
    width: int = 256
    height: int = 256
    val_fraction: float = 0.2
    seed: int = 0
    object_scale: float = 1.0

    def check(self) -> None:
        """Raises ValueError with a one-line reason for settings that cannot be drawn."""
        if not 2 <= self.images <= MAX_IMAGES:
            raise ValueError(f"--images must be between 2 and {MAX_IMAGES}")
        if not (96 <= self.width <= MAX_SIDE and 96 <= self.height <= MAX_SIDE):
            raise ValueError(f"image sides must be between 96 and {MAX_SIDE} pixels")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("val_fraction must be between 0 and 1")
        if not 0.25 <= self.object_scale <= 4.0:
            raise ValueError("object_scale must be between 0.25 and 4")


def _hsv_colour(rng: np.random.Generator, hue: tuple[int, int], sat=(150, 255), val=(150, 255)):
    h = int(rng.integers(hue[0], hue[1] + 1))
    s = int(rng.integers(sat[0], sat[1] + 1))
    v = int(rng.integers(val[0], val[1] + 1))
    bgr = cv2.cvtColor(np.uint8([[[h, s, v]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr[::-1])  # RGB


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8: a muted gradient, a road band, a few faint lines and noise."""
    top = rng.uniform(60, 200, size=3)
    bottom = rng.uniform(60, 200, size=3)
    # Pull towards grey so that no background is as saturated as an object.
    top = 0.5 * top + 0.5 * top.mean()
    bottom = 0.5 * bottom + 0.5 * bottom.mean()
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    img = (1 - t) * top + t * bottom  # [H, 1, 3]
    img = np.repeat(img, width, axis=1)
    road_top = int(rng.uniform(0.45, 0.7) * height)
    img[road_top:] = 0.6 * img[road_top:] + 0.4 * rng.uniform(70, 130)
    for _ in range(int(rng.integers(2, 6))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        shade = float(rng.uniform(-35, 35))
        canvas = np.zeros((height, width), np.float32)
        cv2.line(canvas, p1, p2, 1.0, int(rng.integers(1, 4)), cv2.LINE_AA)
        img += canvas[:, :, None] * shade
    img += rng.normal(0.0, 6.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_car(img, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    wheel_r = max(int(0.2 * h), 2)
    body_bottom = y2 - wheel_r
    cv2.rectangle(img, (x1, y1 + int(0.35 * h)), (x2, body_bottom), colour, -1, cv2.LINE_AA)
    roof = np.array(
        [
            (x1 + int(0.2 * w), y1 + int(0.37 * h)),
            (x1 + int(0.32 * w), y1),
            (x1 + int(0.72 * w), y1),
            (x1 + int(0.85 * w), y1 + int(0.37 * h)),
        ],
        np.int32,
    )
    cv2.fillConvexPoly(img, roof, colour, cv2.LINE_AA)
    window = tuple(int(c * 0.35 + 160) for c in (200, 230, 255))
    cv2.rectangle(
        img,
        (x1 + int(0.36 * w), y1 + int(0.08 * h)),
        (x1 + int(0.68 * w), y1 + int(0.33 * h)),
        window,
        -1,
    )
    for cx in (x1 + int(0.25 * w), x1 + int(0.75 * w)):
        cv2.circle(img, (cx, y2 - wheel_r), wheel_r, (25, 25, 25), -1, cv2.LINE_AA)


def _draw_person(img, box, colour, skin) -> None:
    """A figure filling ``box``: head, body, legs and arms."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) // 2
    head_r = max(int(min(0.13 * h, 0.45 * w)), 2)
    cv2.circle(img, (cx, y1 + head_r), head_r, skin, -1, cv2.LINE_AA)
    body_top, body_bottom = y1 + 2 * head_r, y1 + int(0.62 * h)
    half = max(int(0.32 * w), 1)
    cv2.rectangle(img, (cx - half, body_top), (cx + half, body_bottom), colour, -1, cv2.LINE_AA)
    thick = max(int(0.16 * w), 2)
    cv2.line(img, (cx - half // 2, body_bottom), (x1 + thick // 2, y2 - thick // 2), colour, thick)
    cv2.line(img, (cx + half // 2, body_bottom), (x2 - thick // 2, y2 - thick // 2), colour, thick)
    arm = max(thick // 2, 1)
    cv2.line(img, (cx - half, body_top + arm), (x1 + arm, body_top + int(0.25 * h)), colour, arm)
    cv2.line(img, (cx + half, body_top + arm), (x2 - arm, body_top + int(0.25 * h)), colour, arm)


def _draw_cyclist(img, box, colour, skin) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    wheel_r = max(int(min(0.22 * w, 0.2 * h)), 3)
    wy = y2 - wheel_r
    left, right = x1 + wheel_r, x2 - wheel_r
    frame = (40, 40, 40)
    thick = max(wheel_r // 4, 1)
    for cx in (left, right):
        cv2.circle(img, (cx, wy), wheel_r - thick // 2, frame, thick + 1, cv2.LINE_AA)
    seat = ((left + right) // 2, wy - int(1.1 * wheel_r))
    cv2.line(img, (left, wy), seat, frame, thick + 1, cv2.LINE_AA)
    cv2.line(img, seat, (right, wy), frame, thick + 1, cv2.LINE_AA)
    rider_w = max(int(0.42 * w), 4)
    _draw_person(img, (seat[0] - rider_w // 2, y1, seat[0] + rider_w // 2, wy), colour, skin)


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_image(
    rng: np.random.Generator, height: int, width: int, object_scale: float = 1.0
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """One image and its objects.

    Returns:
        pixels: [H, W, 3] uint8 RGB.
        objects: (class name, (x1, y1, x2, y2)) per object, integer pixel corners with
            exclusive x2 / y2 (the box covers ``x1 <= x < x2``); ``"DontCare"`` for ignored blocks.
    """
    img = _background(rng, height, width)
    scale = object_scale * min(height, width) / 256.0
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    count = int(rng.choice(MAX_OBJECTS + 1, p=[0.05, 0.25, 0.3, 0.25, 0.15]))
    if rng.random() < 0.15:
        bw, bh = int(rng.integers(20, 50) * scale), int(rng.integers(15, 35) * scale)
        x1, y1 = int(rng.integers(0, width - bw)), int(rng.integers(0, height - bh))
        grey = int(rng.integers(90, 170))
        block = np.full((bh, bw, 3), grey, np.uint8)
        for k in range(-bh, bw, 6):
            cv2.line(block, (k, bh - 1), (k + bh, 0), (grey - 40,) * 3, 1)
        img[y1 : y1 + bh, x1 : x1 + bw] = block
        objects.append(("DontCare", (x1, y1, x1 + bw, y1 + bh)))
    for _ in range(count):
        name = CLASSES[int(rng.integers(len(CLASSES)))]
        for _attempt in range(20):
            bh = int(rng.uniform(*HEIGHTS[name]) * scale)
            bw = max(int(bh * rng.uniform(*ASPECTS[name])), 8)
            if bw >= width - 2 or bh >= height - 2:
                continue
            x1 = int(rng.integers(0, width - bw))
            y1 = int(rng.integers(0, height - bh))
            box = (x1, y1, x1 + bw, y1 + bh)
            if all(_iou(box, other) < 0.05 for _, other in objects):
                break
        else:
            continue
        colour = _hsv_colour(rng, HUES[name])
        skin = _hsv_colour(rng, (8, 18), sat=(60, 140), val=(170, 240))
        inner = (box[0], box[1], box[2] - 1, box[3] - 1)
        if name == "Car":
            _draw_car(img, inner, colour, rng)
        elif name == "Pedestrian":
            _draw_person(img, inner, colour, skin)
        else:
            _draw_cyclist(img, inner, colour, skin)
        objects.append((name, box))
    return img, objects


def kitti_line(name: str, box: tuple[float, float, float, float]) -> str:
    """A 15-field KITTI label line; only the class and the 2-D box carry information."""
    x1, y1, x2, y2 = box
    return f"{name} 0.00 0 0.00 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} 0 0 0 0 0 0 0"


def make_dataset(out: str | os.PathLike[str], settings: SyntheticSettings | None = None) -> Path:
    """Write the dataset under ``out`` (created; files already there with the same names are
    replaced, nothing else is touched) and return its root.

    Raises:
        ValueError: bad settings (one-line message).
        OSError: the folder cannot be written.
    """
    settings = settings or SyntheticSettings()
    settings.check()
    root = Path(out)
    image_dir = root / "training" / "image_2"
    label_dir = root / "training" / "label_2"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    ids = [f"{i:06d}" for i in range(settings.images)]
    for image_id in ids:
        pixels, objects = draw_image(rng, settings.height, settings.width, settings.object_scale)
        # PNG without a timestamp: the bytes depend on the pixels only.
        cv2.imwrite(str(image_dir / f"{image_id}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        lines = [kitti_line(name, box) for name, box in objects]
        (label_dir / f"{image_id}.txt").write_text("".join(line + "\n" for line in lines))
    order = rng.permutation(len(ids))
    n_val = max(1, round(settings.val_fraction * len(ids)))
    val = sorted(ids[i] for i in order[:n_val])
    train = sorted(ids[i] for i in order[n_val:])
    (root / "train.txt").write_text("".join(i + "\n" for i in train))
    (root / "val.txt").write_text("".join(i + "\n" for i in val))
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    return root
