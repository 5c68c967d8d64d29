"""A font with Hangul glyphs for the still pictures (``render``, ``detect --out``), and text
drawn with it onto RGB arrays.

OpenCV's Hershey fonts have Latin letters only, so the pictures' text is drawn with PIL and a
TrueType font, looked for in this order:

1. ``$FRCNN_FONT`` (a .ttf/.otf/.ttc file);
2. Debian's ``fonts-nanum`` (NanumGothic; NanumGothicBold for bold text);
3. Noto Sans CJK (Debian's ``fonts-noto-cjk``, Fedora, Arch), Apple SD Gothic Neo, Malgun Gothic;
4. DejaVu Sans (Latin only).

A font counts as having Hangul when it draws "가" with ink that differs from the box it draws
for a code point no font has (its ``.notdef`` glyph). When no font has Hangul, the first one
found (else PIL's built-in font) is used and a warning, logged once, says that Korean text will
show as boxes and how to install ``fonts-nanum``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_ENV = "FRCNN_FONT"
NANUM = Path("/usr/share/fonts/truetype/nanum")
# (regular, bold) per family, most wanted first; a .ttc file as (path, face index).
CANDIDATES: tuple[tuple[tuple[str, int], tuple[str, int]], ...] = (
    ((str(NANUM / "NanumGothic.ttf"), 0), (str(NANUM / "NanumGothicBold.ttf"), 0)),
    ((str(NANUM / "NanumBarunGothic.ttf"), 0), (str(NANUM / "NanumBarunGothicBold.ttf"), 0)),
    # Noto Sans CJK collections: face 1 is the Korean one (JP, KR, SC, TC, HK).
    (
        ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 1),
        ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 1),
    ),
    (
        ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 1),
        ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc", 1),
    ),
    (
        ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 1),
        ("/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc", 1),
    ),
    (
        ("/usr/share/fonts/truetype/noto/NotoSansKR-Regular.ttf", 0),
        ("/usr/share/fonts/truetype/noto/NotoSansKR-Bold.ttf", 0),
    ),
    (
        ("/System/Library/Fonts/AppleSDGothicNeo.ttc", 0),
        ("/System/Library/Fonts/AppleSDGothicNeo.ttc", 6),
    ),
    (("C:/Windows/Fonts/malgun.ttf", 0), ("C:/Windows/Fonts/malgunbd.ttf", 0)),
    (
        ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0),
        ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 0),
    ),
)
HANGUL_PROBE = "가"
# U+0378 is unassigned: every font draws its .notdef glyph (a box, or nothing) for it.
MISSING_PROBE = "\u0378"
INSTALL_HINT = (
    "Korean text in the pictures will show as boxes: no font with Hangul was found. "
    "Install one (Debian/Ubuntu: apt-get install fonts-nanum) or set FRCNN_FONT to a .ttf "
    "file that has Hangul."
)

log = logging.getLogger(__name__)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _ink(font: Font, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)


def has_hangul(font: Font) -> bool:
    """Whether ``font`` draws Hangul: "가" leaves ink, and not the ink of its missing glyph."""
    size, ink = _ink(font, HANGUL_PROBE)
    if size[0] * size[1] == 0 or not any(ink):
        return False
    return (size, ink) != _ink(font, MISSING_PROBE)


def _open(path: str, index: int, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(path, size, index=index)
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _choose(env_font: str, bold: bool) -> tuple[tuple[str, int] | None, bool]:
    """The font file to use, and whether it has Hangul (see the module docstring)."""
    candidates: list[tuple[str, int]] = [(env_font, 0)] if env_font else []
    candidates += [pair[1] if bold else pair[0] for pair in CANDIDATES]
    if bold:  # a family without a bold file still beats a Latin-only font
        candidates += [pair[0] for pair in CANDIDATES]
    first = None
    for path, index in candidates:
        font = _open(path, index, 24) if os.path.isfile(path) else None
        if font is None:
            if path == env_font:
                log.warning("%s=%s is not a font file that can be read", FONT_ENV, env_font)
            continue
        if has_hangul(font):
            return (path, index), True
        if path == env_font:
            log.warning("%s=%s has no Hangul: looking for another font", FONT_ENV, env_font)
        first = first or (path, index)
    return first, False


def font_file(bold: bool = False) -> tuple[str, int] | None:
    """(path, face index) of the font the pictures use; None: PIL's built-in font."""
    return _choose(os.environ.get(FONT_ENV, "").strip(), bold)[0]


def hangul_available(bold: bool = False) -> bool:
    """Whether the pictures' font draws Hangul."""
    return _choose(os.environ.get(FONT_ENV, "").strip(), bold)[1]


@functools.lru_cache(maxsize=64)
def _font(choice: tuple[str, int] | None, size: int) -> Font:
    if choice is not None:
        font = _open(choice[0], choice[1], size)
        if font is not None:
            return font
    return ImageFont.load_default(size)


def font(size: float, bold: bool = False) -> Font:
    """The pictures' font at ``size`` pixels (em height)."""
    return _font(font_file(bold), max(1, round(size)))


@functools.lru_cache(maxsize=1)
def _warn_no_hangul() -> None:
    log.warning(INSTALL_HINT)


HANGUL_RANGES = ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F))


def _needs_hangul(text: str) -> bool:
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in HANGUL_RANGES)


def text_size(text: str, size: float, bold: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` on one line (its ink box from the origin)."""
    _, top, right, bottom = font(size, bold).getbbox(text)
    return math.ceil(right), math.ceil(bottom - min(top, 0))


def put_text(
    image: np.ndarray,
    text: str,
    org: tuple[float, float],
    size: float,
    colour: tuple[int, int, int],
    *,
    bold: bool = False,
    anchor: str = "ls",
    outline: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw ``text`` on ``image`` (uint8 RGB [H, W, 3], in place) and return it.

    Args:
        org: (x, y) of the ``anchor`` point; "ls" (default) is the left end of the baseline,
            as ``cv2.putText`` places text; "lm" centres the line vertically on y.
        size: font size in pixels.
        outline: colour of a 1-pixel-per-20-px outline that keeps the text readable on a photo.
    """
    if not text:
        return image
    if _needs_hangul(text) and not hangul_available(bold):
        _warn_no_hangul()
    f = font(size, bold)
    stroke = max(1, round(size / 20)) if outline is not None else 0
    if not isinstance(f, ImageFont.FreeTypeFont):  # PIL's bitmap font: top-left anchor only
        anchor = "la"
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = draw.textbbox(org, text, font=f, anchor=anchor, stroke_width=stroke)
    h, w = image.shape[:2]
    x0, y0 = max(0, math.floor(left)), max(0, math.floor(top))
    x1, y1 = min(w, math.ceil(right) + 1), min(h, math.ceil(bottom) + 1)
    if x0 >= x1 or y0 >= y1:
        return image
    # Only the text's own box goes through PIL: a large photo is not copied for a label.
    region = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    ImageDraw.Draw(region).text(
        (org[0] - x0, org[1] - y0),
        text,
        font=f,
        fill=tuple(colour),
        anchor=anchor,
        stroke_width=stroke,
        stroke_fill=tuple(outline) if outline is not None else None,
    )
    image[y0:y1, x0:x1] = np.asarray(region)
    return image


def fit(
    text: str, width: int, size: float, bold: bool = False, smallest: float = 0.7
) -> tuple[list[str], float]:
    """Lines and a font size for ``text`` in ``width`` pixels: one line at ``size``; else one
    line at a smaller size, down to ``smallest`` times it; else lines cut at spaces at ``size``
    (see :func:`wrap`)."""
    needed = text_size(text, size, bold)[0]
    if needed <= width:
        return [text], size
    smaller = size * width / needed
    while smaller >= size * smallest:
        if text_size(text, smaller, bold)[0] <= width:
            return [text], smaller
        smaller -= 0.5
    return wrap(text, width, size, bold), size


def wrap(text: str, width: int, size: float, bold: bool = False) -> list[str]:
    """``text`` cut at spaces into lines no wider than ``width`` pixels (a word wider than
    that stays whole on its own line)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and text_size(candidate, size, bold)[0] > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    return lines
