"""Stage 1: decoding every kind of odd file a user may upload, and resizing to the input frame.

All images are made in memory with PIL, numpy or OpenCV; nothing is read from the internet."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from frcnn_core.image import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageError,
    ResizeParams,
    load_image,
    resize_image,
)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` 8-bit RGB, with a few bytes of pixel data:
    what a decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel data is decoded (PIL decodes in ImageFile.load)."""

    def refuse(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# ---- accepted, with a note -----------------------------------------------------------------


def test_plain_rgb_png_round_trips():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    loaded = load_image(encode(Image.fromarray(pixels)))
    assert loaded.format == "PNG"
    assert loaded.size == (7, 11)
    assert loaded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.notes == ()


def test_16bit_grayscale_png_scaled_to_8_bits():
    # 16-bit values v map to round(v / 257) (65535 -> 255): 0 -> 0, 2570 -> 10, 65535 -> 255,
    # 32896 -> 128, 51400 -> 200 (v / 256 would give 201).
    values = np.array([[0, 2570, 65535, 32896, 51400]], dtype=np.uint16)
    img = Image.frombytes("I;16", (5, 1), values.astype("<u2").tobytes())
    loaded = load_image(encode(img))
    assert loaded.pixels.shape == (1, 5, 3)
    assert loaded.pixels[0, :, 0].tolist() == [0, 10, 255, 128, 200]
    assert (loaded.pixels[..., 0] == loaded.pixels[..., 2]).all()  # gray in all three channels
    assert any("16-bit" in n for n in loaded.notes)


def test_16bit_rgb_png_decodes_to_8_bits():
    # OpenCV writes 48-bit PNGs (BGR order); PIL keeps the high byte: 257 * 200 -> 200.
    bgr = np.zeros((3, 4, 3), dtype=np.uint16)
    bgr[..., 0] = 65535  # blue
    bgr[..., 2] = 257 * 200  # red
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    loaded = load_image(buf.tobytes())
    assert loaded.size == (3, 4)
    assert loaded.pixels[1, 1].tolist() == [200, 0, 255]


def test_rgba_png_flattened_onto_white():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[0, 0, 3] = 255  # ... opaque here
    rgba[0, 1, 3] = 128  # half transparent: 255 * 128/255 + 255 * 127/255 for R, 127 for G, B
    # alpha 0 elsewhere: white
    loaded = load_image(encode(Image.fromarray(rgba, "RGBA")))
    assert loaded.pixels[0, 0].tolist() == [255, 0, 0]
    assert loaded.pixels[1, 2].tolist() == [255, 255, 255]
    r, g, b = loaded.pixels[0, 1].tolist()
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1
    assert any("transparency" in n for n in loaded.notes)


def test_palette_png():
    img = Image.new("P", (5, 4), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 2), 1)
    loaded = load_image(encode(img))
    assert loaded.size == (4, 5)
    assert loaded.pixels[0, 0].tolist() == [255, 0, 0]
    assert loaded.pixels[2, 1].tolist() == [0, 255, 0]  # (x=1, y=2) -> row 2, column 1


def test_palette_png_with_transparent_entry():
    img = Image.new("P", (3, 2), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    loaded = load_image(encode(img, transparency=1))
    assert loaded.pixels[1, 1].tolist() == [255, 255, 255]  # entry 1 is transparent
    assert loaded.pixels[0, 0].tolist() == [255, 0, 0]


def test_grayscale_shown_as_rgb():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    loaded = load_image(encode(Image.fromarray(gray, "L")))
    assert loaded.pixels.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(loaded.pixels[..., c], gray)
    assert any("grayscale" in n for n in loaded.notes)


def test_cmyk_jpeg_converted_to_rgb():
    # C=0, M=255, Y=255, K=0 is red.
    data = encode(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    loaded = load_image(data)
    assert loaded.format == "JPEG"
    assert loaded.size == (8, 16)
    r, g, b = loaded.pixels[4, 8].tolist()
    assert r > 240 and g < 15 and b < 15
    assert any("CMYK" in n for n in loaded.notes)


def test_exif_orientation_6_is_shown_upright():
    # Stored 40 wide x 20 tall, left half red, right half blue. Orientation 6 says "rotate 90
    # degrees clockwise to view": upright it is 20 wide x 40 tall with red on top.
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    loaded = load_image(data)
    assert loaded.size == (40, 20)  # (H, W): swapped
    top, bottom = loaded.pixels[5, 10].tolist(), loaded.pixels[35, 10].tolist()
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    assert any("EXIF" in n for n in loaded.notes)


def test_exif_orientation_1_is_left_alone():
    exif = Image.Exif()
    exif[0x0112] = 1
    loaded = load_image(encode(Image.new("RGB", (40, 20)), "JPEG", exif=exif.tobytes()))
    assert loaded.size == (20, 40)
    assert not any("EXIF" in n for n in loaded.notes)


def test_animated_gif_uses_first_frame():
    frames = []
    for index in (0, 1, 2):  # distinct frames: PIL merges identical consecutive ones
        frame = Image.new("P", (10, 6), index)
        frame.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    loaded = load_image(buf.getvalue())
    assert loaded.format == "GIF"
    assert loaded.size == (6, 10)
    assert (loaded.pixels == np.array([255, 0, 0], dtype=np.uint8)).all()  # frame 0 is red
    assert any("first" in n and "3" in n for n in loaded.notes)


def test_load_from_path(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (6, 3), (1, 2, 3))))
    loaded = load_image(path)
    assert loaded.size == (3, 6)
    assert loaded.pixels[0, 0].tolist() == [1, 2, 3]
    assert load_image(str(path)).size == (3, 6)


# ---- refused with ImageError ------------------------------------------------------------


def test_truncated_jpeg():
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageError, match=r"truncated|damaged"):
        load_image(data[: len(data) // 2])


def test_empty_bytes():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(path)


def test_text_file(tmp_path):
    with pytest.raises(ImageError):
        load_image(b"x1,y1,x2,y2\n10,20,30,40\n" * 20)
    path = tmp_path / "notes.txt"
    path.write_text("this is not an image\n", encoding="utf-8")
    with pytest.raises(ImageError, match=r"notes\.txt"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match=r"nothere\.png"):
        load_image(tmp_path / "nothere.png")


def test_unsupported_format():
    with pytest.raises(ImageError, match="PPM"):
        load_image(encode(Image.new("RGB", (3, 2)), "PPM"))


def test_file_over_the_byte_limit():
    with pytest.raises(ImageError, match="MB"):
        load_image(b"\0" * (MAX_FILE_BYTES + 1))


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (10000, 10000), (8000, 6000)])
def test_decompression_bomb_refused_from_header(width, height, no_decoding):
    # 400, 100 and 48 megapixels, all over the 40 megapixel limit; the files are a few hundred
    # bytes. 400 MP is over PIL's own hard limit, 100 MP over its warning limit, 48 MP only over
    # ours: each path must end in ImageError without decoding a pixel.
    assert width * height > MAX_PIXELS
    data = png_header_only(width, height)
    assert len(data) < 200
    with pytest.raises(ImageError, match="pixels"):
        load_image(data)


def test_real_one_bit_bomb_refused_before_decoding(no_decoding):
    # A genuine 1-bit PNG of 7000 x 6000 = 42 MP compresses to about 5 kB.
    data = encode(Image.new("1", (7000, 6000)))
    assert len(data) < 20_000
    with pytest.raises(ImageError, match="pixels"):
        load_image(data)


def test_header_just_under_the_limit_is_decoded():
    # The guard must not refuse what it should accept: a real (tiny) image is decoded.
    loaded = load_image(encode(Image.new("1", (200, 100), 1)))
    assert loaded.size == (100, 200)
    assert (loaded.pixels == 255).all()


# ---- resize_image (the boxes follow in test_ground_truth.py) ------------------------------


def test_resize_image_to_the_input_frame():
    pixels = np.zeros((1333, 2000, 3), dtype=np.uint8)
    out = resize_image(pixels, ResizeParams())
    assert out.pixels.shape == (800, 800, 3) and out.pixels.dtype == np.uint8
    assert out.pixels.flags["C_CONTIGUOUS"]
    # sx = 800 / 2000 = 0.4, sy = 800 / 1333 = 0.60015: what the boxes are scaled by.
    assert out.scale == pytest.approx((0.4, 800 / 1333))
    assert out.original_size == (1333, 2000)
    assert out.size == (800, 800)


def test_resize_non_square_frame():
    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    pixels[:150] = 255  # top half white
    before = pixels.copy()
    out = resize_image(pixels, ResizeParams(480, 640))
    assert out.pixels.shape == (480, 640, 3) and out.size == (480, 640)
    # sx = 640 / 400 = 1.6, sy = 480 / 300 = 1.6: the white half is the top 240 rows.
    assert out.scale == (1.6, 1.6)
    assert out.pixels[100, 320].tolist() == [255, 255, 255]
    assert out.pixels[400, 320].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(pixels, before)  # the original is not modified


def test_resize_is_bicubic_and_truncate_does_not_touch_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    out = resize_image(pixels, ResizeParams(64, 96))
    expected = cv2.resize(pixels, (96, 64), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out.pixels, expected)
    floats = resize_image(pixels, ResizeParams(64, 96, truncate_boxes=False))
    np.testing.assert_array_equal(floats.pixels, out.pixels)
