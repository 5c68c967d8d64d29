"""Stage 1: load an image safely and resize it to the input frame (its boxes follow in
:mod:`frcnn_core.ground_truth`).

Every way a user's file can be odd is handled here and reported as :class:`ImageError` with a
one-sentence message, or accepted with a note: 16-bit, RGBA, palette, CMYK, grayscale, EXIF
rotation (shown upright; boxes are in the upright frame), animated (first frame), tiny or very
thin images. A decompression bomb is refused from its header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from frcnn_core.i18n import _
from frcnn_core.safe_io import InputError, read_file

# 40 megapixels decodes to 120 MB of RGB: enough for any camera photo a class will upload,
# small enough that thirty students at once cannot exhaust the server.
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024
EXIF_ORIENTATION = 0x0112
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")


class ImageError(ValueError):
    """A file that cannot be used as an image; the message is meant for the user."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image in the upright frame.

    Attributes:
        pixels: uint8 RGB array [H, W, 3].
        notes: what was done to make it usable (e.g. "16-bit PNG scaled to 8 bits").
        format: the file format PIL recognised ("PNG", "JPEG", ...).
    """

    pixels: np.ndarray
    notes: tuple[str, ...] = ()
    format: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


@dataclass(frozen=True)
class ResizeParams:
    """Stage 1 settings: the input frame is ``height x width``; boxes are scaled by
    ``(width / W, height / H)`` and, like the tutorial, truncated to whole pixels unless
    ``truncate_boxes`` is false."""

    height: int = 800
    width: int = 800
    truncate_boxes: bool = True


@dataclass(frozen=True)
class InputImage:
    """The image in the input frame.

    Attributes:
        pixels: uint8 RGB array [height, width, 3].
        scale: (sx, sy), input-frame pixels per original pixel.
        original_size: (H, W) of the upright original.
    """

    pixels: np.ndarray
    scale: tuple[float, float]
    original_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def _to_rgb(img: Image.Image, notes: list[str]) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
            notes.append("16-bit image scaled to 8 bits")
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            notes.append(f"{mode}-mode image stretched to 8 bits")
        gray = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
        notes.append("transparency flattened onto white")
    elif mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale shown as RGB")
    return np.array(img.convert("RGB"), dtype=np.uint8)


def load_image(source: str | os.PathLike[str] | bytes) -> LoadedImage:
    """Decode an image file (path or bytes) to upright uint8 RGB.

    Raises:
        ImageError: empty, not an image, truncated or corrupt, too many pixels, too large.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = _("the upload")
    else:
        name = os.path.basename(os.fspath(source))
        try:
            data = read_file(source, MAX_FILE_BYTES, _("image"))
        except InputError as exc:
            raise ImageError(f"{exc}.") from None
    if not data:
        raise ImageError(_("{name} is empty (0 bytes).").format(name=name))
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_("{name} is over {mb} MB.").format(name=name, mb=MAX_FILE_BYTES // 2**20))
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    _(
                        "{name} is {width} x {height} = {megapixels:.0f} megapixels; the limit "
                        "is {limit:.0f}. Please downscale it first."
                    ).format(
                        name=name,
                        width=width,
                        height=height,
                        megapixels=width * height / 1e6,
                        limit=MAX_PIXELS / 1e6,
                    )
                )
            if img.format not in SUPPORTED_FORMATS:
                raise ImageError(
                    _("{name} is a {format} file; use JPEG, PNG, WebP or BMP.").format(
                        name=name, format=img.format
                    )
                )
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                img.seek(0)
                notes.append(f"animated image: the first of {frames} frames is used")
            img.load()
            fmt = img.format or ""
            if img.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
                img = ImageOps.exif_transpose(img)
                notes.append("EXIF orientation applied: shown upright")
            pixels = _to_rgb(img, notes)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            _(
                "{name} claims too many pixels to decode safely (the limit is {limit:.0f} "
                "megapixels)."
            ).format(name=name, limit=MAX_PIXELS / 1e6)
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            _("{name} is not an image file that can be read (JPEG, PNG, WebP, BMP).").format(
                name=name
            )
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            _("{name} is damaged or truncated and cannot be decoded ({reason}).").format(
                name=name, reason=exc
            )
        ) from exc
    if min(pixels.shape[:2]) < 1:
        raise ImageError(_("{name} has no pixels.").format(name=name))
    return LoadedImage(pixels=pixels, notes=tuple(notes), format=fmt)


def resize_image(pixels: np.ndarray, params: ResizeParams) -> InputImage:
    """Stage 1: resize to the input frame (bicubic).

    Args:
        pixels: uint8 RGB [H, W, 3].
    """
    h, w = pixels.shape[:2]
    resized = cv2.resize(pixels, (params.width, params.height), interpolation=cv2.INTER_CUBIC)
    return InputImage(
        pixels=np.ascontiguousarray(resized),
        scale=(params.width / w, params.height / h),
        original_size=(h, w),
    )
