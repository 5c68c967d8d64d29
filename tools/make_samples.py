"""Write the sample images that the explorer ships into ``sample_images/``.

Nothing is downloaded: the photographs are the ones bundled inside scikit-image
(``skimage.data``; only those that load offline), and the zebra scene is drawn here with
numpy and Pillow from a fixed seed, so every run writes the same pixels.

For each image ``NAME.jpg`` a sidecar ``NAME.json`` holds the title, source, licence and the
ground-truth boxes::

    {"title": ..., "source": ..., "licence": ...,
     "boxes": [{"box": [x1, y1, x2, y2], "label": "zebra"}, ...]}

Boxes are integer ``(x1, y1, x2, y2)`` pixels in the original image frame with
``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``. The boxes of the photographs were picked by
hand on zoomed, gridded copies and checked by drawing them; the coin boxes came from a
watershed segmentation (as in skimage's own coins tutorial) and were checked the same way.
The zebra boxes are the tutorial's four boxes; the zebras are drawn to fill them exactly.

Usage::

    python tools/make_samples.py                 # writes sample_images/
    python tools/make_samples.py --preview /tmp/previews   # also draws the boxes on copies

Requires numpy, Pillow and scikit-image (in requirements-dev.txt); the app itself does not.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "sample_images"
JPEG_QUALITY = 92
SEED = 20240607

# The tutorial's four zebra boxes, in the pixels of its 2000 x 1333 (W x H) image (SPEC section 3).
ZEBRA_SIZE = (2000, 1333)
ZEBRA_BOXES = [
    [223, 782, 623, 1074],
    [597, 695, 1038, 1050],
    [1088, 699, 1452, 1057],
    [1544, 771, 1914, 1063],
]

# Photographs bundled with scikit-image that load without a download (checked with
# scikit-image 0.26: astronaut, chelsea, coffee, rocket and coins are in the wheel; eagle,
# lily, skin, kidney and cells3d need pooch and a network; stereo_motorcycle loads offline but
# its docstring states no licence, so it is not used).
SKIMAGE_SCENES = [
    {
        "name": "astronaut",
        "fn": "astronaut",
        "title": "Astronaut Eileen Collins",
        "source": "skimage.data.astronaut(): NASA portrait of astronaut Eileen Collins, "
        "from the NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "licence": "Public domain (NASA): 'No known copyright restrictions, released into "
        "the public domain.'",
        "boxes": [
            ([21, 15, 363, 512], "person"),
            ([277, 343, 512, 512], "helmet"),
            ([0, 0, 96, 512], "flag"),
            ([352, 0, 458, 278], "space shuttle"),
        ],
    },
    {
        "name": "chelsea",
        "fn": "chelsea",
        "title": "Chelsea the cat",
        "source": "skimage.data.chelsea(): photograph by Stefan van der Walt",
        "licence": "CC0 ('No copyright restrictions. CC0 by the photographer "
        "(Stefan van der Walt).')",
        "boxes": [
            ([0, 0, 400, 300], "cat"),
        ],
    },
    {
        "name": "coffee",
        "fn": "coffee",
        "title": "Coffee cup",
        "source": "skimage.data.coffee(): photograph by Rachel Michetti, courtesy of "
        "Pikolo Espresso Bar",
        "licence": "CC0 ('No copyright restrictions. CC0 by the photographer (Rachel Michetti).')",
        "boxes": [
            ([173, 18, 408, 307], "cup"),
            ([317, 66, 424, 325], "spoon"),
            ([76, 68, 480, 390], "saucer"),
        ],
    },
    {
        "name": "rocket",
        "fn": "rocket",
        "title": "Falcon 9 with DSCOVR on the launch pad",
        "source": "skimage.data.rocket(): SpaceX launch photo of DSCOVR on Falcon 9, "
        "Launch Complex 40, Cape Canaveral "
        "(https://www.flickr.com/photos/spacexphotos/16511594820/)",
        "licence": "Public domain (captured by SpaceX and released into the public domain)",
        "boxes": [
            ([309, 126, 336, 405], "rocket"),
            ([170, 123, 205, 427], "tower"),
            ([440, 123, 481, 427], "tower"),
            ([0, 0, 89, 427], "tower"),
            ([557, 0, 640, 427], "tower"),
        ],
    },
    {
        "name": "coins",
        "fn": "coins",
        "title": "Greek coins from Pompeii",
        "source": "skimage.data.coins(): Brooklyn Museum Collection "
        "(https://www.brooklynmuseum.org/opencollection/archives/image/51611); "
        "greyscale, stored here as RGB",
        "licence": "No known copyright restrictions (Brooklyn Museum)",
        "boxes": [
            (b, "coin")
            for b in [
                [22, 35, 67, 74],
                [81, 39, 120, 74],
                [132, 28, 179, 74],
                [192, 30, 240, 73],
                [255, 34, 297, 72],
                [305, 16, 365, 72],
                [25, 104, 67, 145],
                [84, 108, 122, 145],
                [134, 110, 173, 145],
                [186, 105, 226, 144],
                [245, 95, 296, 144],
                [317, 106, 356, 145],
                [26, 179, 63, 217],
                [80, 175, 124, 217],
                [135, 179, 174, 217],
                [189, 170, 237, 217],
                [251, 172, 297, 217],
                [315, 156, 380, 218],
                [18, 233, 75, 288],
                [93, 245, 136, 287],
                [144, 236, 201, 288],
                [220, 240, 269, 288],
                [276, 239, 326, 289],
                [336, 248, 382, 289],
            ]
        ],
    },
]

ZEBRA_META = {
    "name": "zebras",
    "title": "Zebras (synthetic)",
    "source": "generated by tools/make_samples.py (numpy + Pillow drawing, fixed seed); "
    "its boxes are the four zebra boxes of the Faster R-CNN tutorial",
    "licence": "CC0 / project-generated",
}


# --------------------------------------------------------------------------------------------
# Synthetic zebra scene
# --------------------------------------------------------------------------------------------

WHITE = np.array([238.0, 234.0, 224.0])
BLACK = np.array([24.0, 22.0, 22.0])
SS = 2  # supersampling of the zebra drawing


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Value noise in [0, 1]: random values on a coarse grid, smoothly upsampled."""
    gh, gw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
    coarse = rng.random((gh, gw)).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8), "L").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def _stripes(phase: np.ndarray, duty: float = 0.0, sharp: float = 6.0) -> np.ndarray:
    """1 on black stripes, 0 on white, anti-aliased: black where sin(phase) > duty."""
    return 0.5 + 0.5 * np.tanh(sharp * (np.sin(phase) - duty))


def _limb(draw: ImageDraw.ImageDraw, pts, widths, fill=255) -> None:
    """A tapered limb through pts (design units) with the given widths at each point."""
    p = [(x * SS, y * SS) for x, y in pts]
    w = [v * SS for v in widths]
    for i in range(len(p) - 1):
        (x0, y0), (x1, y1) = p[i], p[i + 1]
        dx, dy = x1 - x0, y1 - y0
        n = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / n, dx / n
        quad = [
            (x0 + nx * w[i] / 2, y0 + ny * w[i] / 2),
            (x1 + nx * w[i + 1] / 2, y1 + ny * w[i + 1] / 2),
            (x1 - nx * w[i + 1] / 2, y1 - ny * w[i + 1] / 2),
            (x0 - nx * w[i] / 2, y0 - ny * w[i] / 2),
        ]
        draw.polygon(quad, fill=fill)
    for (x, y), r in zip(p[1:-1], w[1:-1], strict=True):
        draw.ellipse([x - r / 2, y - r / 2, x + r / 2, y + r / 2], fill=fill)


def _ellipse(draw, cx, cy, rx, ry, fill=255) -> None:
    draw.ellipse([(cx - rx) * SS, (cy - ry) * SS, (cx + rx) * SS, (cy + ry) * SS], fill=fill)


def _poly(draw, pts, fill=255) -> None:
    draw.polygon([(x * SS, y * SS) for x, y in pts], fill=fill)


def _draw_zebra(neck_angle: float, stride: float, seed: int, silhouette_only: bool = False):
    """One zebra facing right, as a tightly cropped RGBA image (design units x SS pixels).

    neck_angle: degrees above the forward horizontal (negative: grazing, head down).
    stride: -1..1, how far the legs swing apart.
    silhouette_only: return just the (width, height) of the silhouette, cheaply.
    """
    rng = np.random.default_rng(seed)
    W0, H0 = 1300, 1000  # design canvas, with room for any pose
    ox, oy = 150, 120  # where the design origin sits inside the canvas
    w, h = W0 * SS, H0 * SS
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / SS
    X, Y = xs - ox, ys - oy  # design coordinates of each pixel
    ground = 720.0

    def T(pts):
        return [(x + ox, y + oy) for x, y in pts]

    def mask_of(paint, smooth: float = 0.0) -> np.ndarray:
        im = Image.new("L", (w, h), 0)
        paint(ImageDraw.Draw(im))
        if smooth:  # round off the joins between the shapes
            im = im.filter(ImageFilter.GaussianBlur(smooth * SS))
            a = np.asarray(im, dtype=np.float32) / 255.0
            return np.clip((a - 0.5) * 4.0 * smooth / 2 + 0.5, 0, 1)
        return np.asarray(im, dtype=np.float32) / 255.0

    def blurred(a: np.ndarray, radius: float) -> np.ndarray:
        im = Image.fromarray((a * 255).astype(np.uint8), "L").filter(
            ImageFilter.GaussianBlur(radius * SS)
        )
        return np.asarray(im, dtype=np.float32) / 255.0

    layers = []  # (alpha, colour thunk), back to front

    def coat(black, shade):
        rgb = WHITE * (1 - black[..., None]) + BLACK * black[..., None]
        return rgb * shade[..., None]

    # ---- geometry of neck and head ---------------------------------------------------------
    a_rad = math.radians(neck_angle)
    dxn, dyn = math.cos(a_rad), -math.sin(a_rad)  # along the neck, towards the head
    nx, ny = dyn, -dxn  # across the neck, towards its crest (the mane side)
    B = (640.0, 285.0)  # neck base, inside the chest
    L = 235.0
    P = (B[0] + L * dxn, B[1] + L * dyn)  # the poll
    head_angle = neck_angle - 100.0
    hr = math.radians(head_angle)
    ux, uy = math.cos(hr), -math.sin(hr)  # along the head, poll to muzzle
    vx, vy = -uy, ux  # across the head; +v is the jaw side, -v the forehead side

    def along_neck(x, y):
        return (x - B[0]) * dxn + (y - B[1]) * dyn

    def head_pt(u, v):
        return (P[0] + u * ux + v * vx, P[1] + u * uy + v * vy)

    # ---- legs ---------------------------------------------------------------------------------
    s = 38 * stride
    legs = [  # (hip or shoulder x, kind, far side?, swing)
        (350, "hind", True, +s),
        (612, "front", True, -s),
        (298, "hind", False, -s),
        (660, "front", False, +s),
    ]
    leg_phase = 2 * math.pi * (Y + 0.12 * X) / 28.0

    def leg_points(x, kind, sw):
        if kind == "hind":  # thigh, hock bent backwards, cannon, pastern, hoof
            return (
                [
                    (x + 5, 330),
                    (x + 22 + 0.3 * sw, 470),
                    (x - 14 + 0.6 * sw, 565),
                    (x - 6 + 0.9 * sw, 672),
                    (x - 2 + sw, ground),
                ],
                [120, 66, 42, 32, 36],
            )
        return (
            [
                (x, 350),
                (x + 2 + 0.3 * sw, 520),
                (x + 0.6 * sw, 585),
                (x + 0.9 * sw, 675),
                (x + 5 + sw, ground),
            ],
            [88, 48, 40, 32, 36],
        )

    for x, kind, far, sw in legs:
        pts, wid = leg_points(x, kind, sw)
        a = mask_of(lambda d, pts=pts, wid=wid: _limb(d, T(pts), wid))

        def colour(far=far, x=x):
            black = np.maximum(_stripes(leg_phase, 0.0), np.clip((Y - (ground - 26)) / 4.0, 0, 1))
            # roundness: darker towards the back edge of the leg, darker for the far legs
            shade = (0.80 if far else 0.98) - 0.10 * np.clip((x - X) / 30.0, 0, 1)
            return coat(black, shade)

        layers.append((a, colour))

    # ---- tail ---------------------------------------------------------------------------------
    tail_pts = [(200, 240), (176, 330), (166, 420), (170, 500)]
    a_tail = mask_of(
        lambda d: (_limb(d, T(tail_pts), [24, 15, 12, 11]), _ellipse(d, 171 + ox, 525 + oy, 15, 42))
    )

    def tail_colour():
        black = np.maximum(_stripes(2 * math.pi * Y / 24.0, 0.2), np.clip((Y - 470) / 10.0, 0, 1))
        return coat(black, np.full_like(X, 0.9))

    layers.append((a_tail, tail_colour))

    # ---- ears (behind the head) -----------------------------------------------------------
    er = math.radians(neck_angle + 20)
    ex, ey = math.cos(er), -math.sin(er)
    ear_polys = []
    for off in (-18, 14):
        bx, by = head_pt(10, off)
        ear_polys.append(
            [
                (bx - ey * 20, by + ex * 20),
                (bx + ex * 50 - ey * 16, by + ey * 50 + ex * 16),
                (bx + ex * 100, by + ey * 100),
                (bx + ex * 50 + ey * 14, by + ey * 50 - ex * 14),
                (bx + ey * 20, by - ex * 20),
            ]
        )
    a_ears = mask_of(lambda d: [_poly(d, T(p)) for p in ear_polys])

    def ear_colour():
        t = ((X - P[0]) * ex + (Y - P[1]) * ey) / 100.0
        black = np.clip((t - 0.72) * 8, 0, 1) + 0.25 * (t < 0.72)
        return coat(np.clip(black, 0, 1), np.full_like(X, 0.92))

    layers.append((a_ears, ear_colour))

    # ---- body + neck + head as one smooth silhouette ----------------------------------------
    neck_poly = [
        (B[0] + nx * 92 - dxn * 30, B[1] + ny * 92 - dyn * 30),
        (P[0] + nx * 46, P[1] + ny * 46),
        (P[0] - nx * 46, P[1] - ny * 46),
        (B[0] - nx * 110 + 20, B[1] - ny * 110 + 30),
    ]
    # head profile (u along the head from the poll, v across; -v forehead, +v jaw)
    prof = [
        (-28, 0),
        (-22, -24),
        (-8, -40),
        (30, -47),
        (110, -42),
        (185, -34),
        (222, -24),
        (236, -4),
        (230, 18),
        (205, 30),
        (150, 34),
        (95, 52),
        (45, 64),
        (10, 52),
        (-14, 34),
    ]
    head_poly = [head_pt(u, v) for u, v in prof]

    def silhouette(d):
        _ellipse(d, 470 + ox, 322 + oy, 232, 108)  # barrel
        _ellipse(d, 292 + ox, 300 + oy, 108, 110)  # hindquarters
        _ellipse(d, 630 + ox, 322 + oy, 96, 100)  # chest
        _ellipse(d, 455 + ox, 345 + oy, 200, 100)  # belly
        _poly(d, T(neck_poly))
        _ellipse(d, P[0] + ox, P[1] + oy, 46, 46)
        _poly(d, T(head_poly))

    a_main = mask_of(silhouette, smooth=12)
    a_neck = mask_of(lambda d: (_poly(d, T(neck_poly)), _ellipse(d, P[0] + ox, P[1] + oy, 46, 46)))
    a_head_s = mask_of(lambda d: _poly(d, T(head_poly)), smooth=3)

    def main_colour():
        # body stripes: near-vertical, wavy; on the hindquarters they bend into arcs
        warp = 16 * np.sin(Y / 48.0 + X / 160.0) + 5 * np.sin(Y / 19.0)
        p_body = (X + warp) / 44.0
        p_rump = np.hypot(X - 440, (Y - 540) * 1.15) / 40.0
        w_rump = 0.5 + 0.5 * np.tanh((385 - X) / 56.0)
        p = (1 - w_rump) * p_body + w_rump * (p_rump + (p_body - p_rump).mean() * 0)
        # neck stripes run round the neck; they meet the body's in a seam at the shoulder
        an = along_neck(X, Y)
        w_neck = a_neck * (0.5 + 0.5 * np.tanh((an - 30) / 6.0))
        black = (1 - w_neck) * _stripes(2 * math.pi * p, 0.05) + w_neck * _stripes(
            2 * math.pi * an / 38.0, 0.05
        )
        # pale belly
        belly = (
            np.clip((Y - 405) / 30.0, 0, 1)
            * np.clip((X - 300) / 60.0, 0, 1)
            * np.clip((600 - X) / 60.0, 0, 1)
        )
        black = black * (1 - 0.8 * belly)
        # roundness: darker near the outline and underneath, lit from above
        inner = blurred(a_main, 40)
        shade = (
            0.78
            + 0.26 * np.clip(inner * 1.6, 0, 1)
            - 0.10 * np.clip((Y - 260) / 200.0, 0, 1) * (1 - w_neck)
        )
        return coat(black, shade)

    layers.append((a_main, main_colour))

    # ---- mane, on the crest of the neck ----------------------------------------------------
    mane = [
        (B[0] + nx * 72 - dxn * 55, B[1] + ny * 72 - dyn * 55),
        (P[0] + nx * 36 + dxn * 10, P[1] + ny * 36 + dyn * 10),
        (P[0] + nx * 64, P[1] + ny * 64),
        (B[0] + nx * 98 - dxn * 40, B[1] + ny * 98 - dyn * 40),
    ]
    a_mane = mask_of(lambda d: _poly(d, T(mane)), smooth=2)

    def mane_colour():
        an = along_neck(X, Y)
        across = (X - B[0]) * nx + (Y - B[1]) * ny - 0.1 * an
        black = np.maximum(
            _stripes(2 * math.pi * an / 19.0, -0.1, 4.0), np.clip((across - 80) / 8.0, 0, 1)
        )
        return coat(black, np.full_like(X, 0.95))

    layers.append((a_mane, mane_colour))

    # ---- head, drawn over the neck and mane so that the jaw line shows ---------------------
    def head_colour():
        U = (X - P[0]) * ux + (Y - P[1]) * uy
        V = (X - P[0]) * vx + (Y - P[1]) * vy
        black = _stripes(2 * math.pi * (U + 0.3 * np.abs(V + 10)) / 21.0, 0.12)
        muzzle = np.clip((U - 178) / 12.0, 0, 1)
        black = np.maximum(black * (1 - muzzle), 0.92 * muzzle)
        eye = np.exp(-(((U - 62) ** 2 + (V + 12) ** 2) / (2 * 6.5**2)))
        nostril = np.exp(-(((U - 214) ** 2 + (V + 6) ** 2) / (2 * 5.0**2)))
        black = np.maximum(black, np.maximum(eye, nostril))
        inner = blurred(a_head_s, 18)
        shade = 0.84 + 0.2 * np.clip(inner * 1.6, 0, 1)
        edge = np.clip(a_head_s - blurred(a_head_s, 1.5) * 1.0, 0, 1) * 2
        return coat(black, shade * (1 - 0.35 * np.clip(edge, 0, 1)))

    layers.append((a_head_s, head_colour))

    # ---- composite ----------------------------------------------------------------------------
    alpha = np.zeros((h, w), np.float32)
    for a, _ in layers:
        alpha = a + alpha * (1 - a)
    ys_, xs_ = np.nonzero(alpha > 0.5)
    crop = (int(xs_.min()), int(ys_.min()), int(xs_.max()) + 1, int(ys_.max()) + 1)
    if silhouette_only:
        return crop[2] - crop[0], crop[3] - crop[1]
    rgb = np.zeros((h, w, 3), np.float32)
    for a, colour in layers:
        rgb = colour() * a[..., None] + rgb * (1 - a[..., None])
    # a thin darker rim gives the silhouette an edge against the grass
    inner = (
        np.asarray(
            Image.fromarray((alpha * 255).astype(np.uint8), "L").filter(ImageFilter.MinFilter(5)),
            np.float32,
        )
        / 255.0
    )
    rgb = rgb * (1 - 0.4 * np.clip(alpha - inner, 0, 1)[..., None])
    rgb = rgb * (0.965 + 0.07 * rng.random((h, w, 1), dtype=np.float32))  # hair texture
    rgba = np.dstack([np.clip(rgb, 0, 255), alpha * 255]).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA").crop(crop)


def _fit_zebra(box, facing_right: bool, stride: float, seed: int) -> Image.Image:
    """A zebra whose silhouette fills box exactly; the neck angle is chosen to suit its shape."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    target = bw / bh
    best = None
    for angle in (-35, -20, -5, 10, 25, 40, 55, 65):
        zw, zh = _draw_zebra(angle, stride, seed, silhouette_only=True)
        err = abs(math.log((zw / zh) / target))
        if best is None or err < best[0]:
            best = (err, angle)
    z = _draw_zebra(best[1], stride, seed)
    if not facing_right:
        z = z.transpose(Image.FLIP_LEFT_RIGHT)
    # Trim parts thinner than a few output pixels (an ear tip, say) from the crop, so that the
    # silhouette still reaches all four sides of the box after downscaling: the box is tight.
    k = 2 * math.ceil(max(z.width / bw, z.height / bh)) + 1
    for _ in range(4):
        opened = z.getchannel("A").filter(ImageFilter.MinFilter(k)).filter(ImageFilter.MaxFilter(k))
        zc = z.crop(opened.point(lambda v: 255 if v > 127 else 0).getbbox())
        out = zc.convert("RGBa").resize((bw, bh), Image.LANCZOS).convert("RGBA")
        a = np.asarray(out)[..., 3] > 127
        if a[0].any() and a[-1].any() and a[:, 0].any() and a[:, -1].any():
            return out
        k += 2
    raise RuntimeError(f"zebra silhouette does not fill its box {box}")


def make_zebras() -> Image.Image:
    W, H = ZEBRA_SIZE
    rng = np.random.default_rng(SEED)
    horizon = 600
    yy = np.arange(H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]

    # sky: deep blue at the top, hazy near the horizon, with soft clouds
    t = np.clip(yy / horizon, 0, 1)
    top, low = np.array([92, 146, 206], np.float32), np.array([214, 226, 232], np.float32)
    sky = top * (1 - t[..., None] ** 0.8) + low * (t[..., None] ** 0.8)
    sky = np.broadcast_to(sky, (H, W, 3)).copy()
    clouds = _smooth_noise(rng, H, W, 260) * 0.6 + _smooth_noise(rng, H, W, 90) * 0.4
    cloud_a = np.clip((clouds - 0.55) * 3.0, 0, 1) * np.clip(1.2 - yy / horizon, 0, 1)
    sky = sky * (1 - 0.65 * cloud_a[..., None]) + 250 * 0.65 * cloud_a[..., None]

    # grass: golden near the horizon, greener and darker in front, patchy
    g = np.clip((yy - horizon) / (H - horizon), 0, 1)
    far_c, near_c = np.array([196, 184, 120], np.float32), np.array([128, 134, 62], np.float32)
    grass = far_c * (1 - g[..., None]) + near_c * g[..., None]
    grass = np.broadcast_to(grass, (H, W, 3)).copy()
    patches = _smooth_noise(rng, H, W, 140) - 0.5
    fine = _smooth_noise(rng, H, W, 12) - 0.5
    grass = grass * (1 + 0.22 * patches[..., None] + 0.10 * fine[..., None])
    grass[..., 0] += 18 * patches  # some patches drier (redder)

    # distant hills, a soft ridge just above the horizon
    ridge = (
        horizon
        - 28
        - 22 * np.sin(xx / 260.0 + 1.3)
        - 12 * np.sin(xx / 97.0)
        - 10 * _smooth_noise(rng, 1, W, 60)
    )
    hill_a = np.clip((yy - ridge) / 2.0, 0, 1)
    hills = np.array([132, 150, 140], np.float32)
    img = np.where(
        (yy < horizon)[..., None], sky * (1 - hill_a[..., None]) + hills * hill_a[..., None], grass
    )
    # haze where the plain meets the hills
    haze = np.exp(-(((yy - horizon) / 18.0) ** 2))
    img = img * (1 - 0.35 * haze[..., None]) + np.array([205, 210, 200]) * 0.35 * haze[..., None]

    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(canvas, "RGBA")

    # acacia trees on the horizon
    for tx, th, tw in ((330, 150, 210), (1290, 95, 130), (1760, 170, 250), (880, 60, 80)):
        base = horizon + 6
        trunk = [
            (tx - 5, base),
            (tx - 3, base - th * 0.7),
            (tx + 3, base - th * 0.7),
            (tx + 6, base),
        ]
        d.polygon(trunk, fill=(62, 52, 40, 255))
        d.line(
            [(tx, base - th * 0.45), (tx - tw * 0.25, base - th * 0.85)],
            fill=(62, 52, 40, 255),
            width=4,
        )
        d.line(
            [(tx, base - th * 0.5), (tx + tw * 0.22, base - th * 0.88)],
            fill=(62, 52, 40, 255),
            width=4,
        )
        for _ in range(9):
            cx = tx + (rng.random() - 0.5) * tw * 0.9
            cy = base - th * (0.86 + 0.1 * rng.random())
            rx, ry = tw * (0.16 + 0.1 * rng.random()), th * 0.07 + 5
            col = (70 + int(20 * rng.random()), 92 + int(20 * rng.random()), 48, 255)
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)

    # grass blades: more and longer towards the viewer
    n_blades = 26000
    by = horizon + (H - horizon) * np.sqrt(rng.random(n_blades))
    bx = rng.random(n_blades) * W
    for x0, y0 in zip(bx, by, strict=True):
        depth = (y0 - horizon) / (H - horizon)
        ln = 3 + 26 * depth * (0.5 + rng.random())
        lean = (rng.random() - 0.5) * ln * 0.6
        shade = rng.random()
        if shade < 0.55:
            col = (150 + int(50 * depth * rng.random()), 150 + int(30 * rng.random()), 70, 150)
        elif shade < 0.85:
            col = (92, 106 + int(30 * rng.random()), 44, 150)
        else:
            col = (214, 200, 140, 170)
        d.line([(x0, y0), (x0 + lean, y0 - ln)], fill=col, width=1 if depth < 0.5 else 2)

    # zebras, back to front (a higher bottom edge is further away)
    poses = {0: (False, 0.6), 1: (True, -0.4), 2: (False, 0.2), 3: (True, 0.8)}
    order = sorted(range(len(ZEBRA_BOXES)), key=lambda i: ZEBRA_BOXES[i][3])
    shadow = Image.new("L", (W, H), 0)
    sd = ImageDraw.Draw(shadow)
    for x1, y1, x2, y2 in ZEBRA_BOXES:
        bw, bh = x2 - x1, y2 - y1
        sd.ellipse([x1 + 0.08 * bw, y2 - 0.07 * bh, x2 - 0.05 * bw, y2 + 0.03 * bh], fill=150)
    shadow = shadow.filter(ImageFilter.GaussianBlur(10))
    canvas = Image.composite(
        Image.new("RGB", (W, H), (60, 64, 30)), canvas, shadow.point(lambda v: int(v * 0.7))
    )
    for i in order:
        x1, y1, x2, y2 = ZEBRA_BOXES[i]
        facing_right, stride = poses[i]
        z = _fit_zebra(ZEBRA_BOXES[i], facing_right, stride, SEED + i)
        canvas.paste(z, (x1, y1), z)
        # a few grass blades in front of the hooves ground the animals
        d = ImageDraw.Draw(canvas, "RGBA")
        for _ in range(140):
            gx = x1 + rng.random() * (x2 - x1)
            gy = y2 - 2 + rng.random() * 14
            ln = 6 + 16 * rng.random()
            d.line(
                [(gx, gy), (gx + (rng.random() - 0.5) * 8, gy - ln)],
                fill=(150 + int(40 * rng.random()), 150, 70, 200),
                width=2,
            )

    arr = np.asarray(canvas, np.float32)
    # gentle vignette and sensor noise, so it reads as a photograph on a projector
    r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    arr = arr * (1 - 0.12 * np.clip(r2 - 0.3, 0, None))[..., None]
    arr = arr + rng.normal(0, 2.0, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _check_boxes(boxes, size) -> None:
    W, H = size
    for b in boxes:
        x1, y1, x2, y2 = b["box"]
        assert all(isinstance(v, int) for v in b["box"]), b
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H, (b, size)
        assert isinstance(b["label"], str) and b["label"], b


def _write(name: str, img: Image.Image, meta: dict, boxes: list, out_dir: Path) -> Path:
    boxes = [{"box": [int(v) for v in box], "label": label} for box, label in boxes]
    _check_boxes(boxes, img.size)
    path = out_dir / f"{name}.jpg"
    img.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
    head = {"title": meta["title"], "source": meta["source"], "licence": meta["licence"]}
    # one box per line: readable, and still plain JSON
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    items = ",\n    ".join(json.dumps(b) for b in boxes)
    lines.append('  "boxes": [' + (f"\n    {items}\n  " if boxes else "") + "]")
    text = "{\n" + "\n".join(lines) + "\n}\n"
    assert json.loads(text) == {**head, "boxes": boxes}
    (out_dir / f"{name}.json").write_text(text, encoding="utf-8")
    return path


def _preview(path: Path, preview_dir: Path) -> None:
    doc = json.loads(path.with_suffix(".json").read_text())
    im = Image.open(path).convert("RGB")
    d = ImageDraw.Draw(im)
    lw = max(2, im.width // 400)
    for b in doc["boxes"]:
        x1, y1, x2, y2 = b["box"]
        d.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(0, 255, 0), width=lw)
        d.text((x1 + 3, y1 + 3), b["label"], fill=(0, 255, 0))
    preview_dir.mkdir(parents=True, exist_ok=True)
    im.save(preview_dir / f"{path.stem}_boxes.png")


def _readme(rows) -> str:
    lines = [
        "# Sample images",
        "",
        "Written by `python tools/make_samples.py` (no download: the photographs are bundled",
        "with scikit-image, the zebra scene is drawn by the script from a fixed seed). Each",
        "`NAME.jpg` has a sidecar `NAME.json` with its title, source, licence and ground-truth",
        'boxes `{"box": [x1, y1, x2, y2], "label": ...}` in original-image pixels.',
        "",
        "`zebras.jpg` is 2000 x 1333 and its four boxes are exactly the tutorial's zebra boxes,",
        "so the explorer reproduces the reference numbers of SPEC section 3 on it.",
        "",
        "| file | size (W x H) | objects | source | licence |",
        "|---|---|---|---|---|",
    ]
    for name, size, labels, meta in rows:
        counts = {}
        for lab in labels:
            counts[lab] = counts.get(lab, 0) + 1
        objs = ", ".join(f"{n} {lab}" for lab, n in counts.items())
        lines.append(
            f"| `{name}.jpg` | {size[0]} x {size[1]} | {objs} "
            f"| {meta['source']} | {meta['licence']} |"
        )
    lines += [
        "",
        "The scikit-image licences are those stated in the docstrings of the `skimage.data`",
        "functions (scikit-image itself is BSD-3-Clause). Boxes of the photographs were picked by",
        "hand and checked by drawing them on the image",
        "(`python tools/make_samples.py --preview DIR`).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=OUT_DIR, help="output folder (default: sample_images/)"
    )
    ap.add_argument(
        "--preview", type=Path, default=None, help="also write copies with the boxes drawn here"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import skimage
    import skimage.data

    rows, written = [], []
    zeb = make_zebras()
    zb = [(b, "zebra") for b in ZEBRA_BOXES]
    written.append(_write("zebras", zeb, ZEBRA_META, zb, args.out))
    rows.append(("zebras", zeb.size, [lab for _, lab in zb], ZEBRA_META))
    for scene in SKIMAGE_SCENES:
        arr = getattr(skimage.data, scene["fn"])()
        img = Image.fromarray(arr).convert("RGB")
        meta = dict(scene)
        meta["source"] = scene["source"] + f" (scikit-image {skimage.__version__})"
        written.append(_write(scene["name"], img, meta, scene["boxes"], args.out))
        rows.append((scene["name"], img.size, [lab for _, lab in scene["boxes"]], meta))
    (args.out / "README.md").write_text(_readme(rows), encoding="utf-8")

    total = 0
    for p in written:
        size = p.stat().st_size + p.with_suffix(".json").stat().st_size
        total += size
        print(f"{p.name} (+ .json)  {size / 1024:.0f} KiB")
        if args.preview:
            _preview(p, args.preview)
    print(f"total {total / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
