"""Robustness at the core: every odd file, box and parameter a student can produce is either
used (with a note) or refused with an ``ImageError`` sentence, and every stage survives the
extremes of its parameters with empty, well-shaped results instead of an exception.

This complements, and does not repeat:

- tests/test_image.py: 16-bit gray and RGB PNG, RGBA and palette PNG (with a transparent entry),
  grayscale, CMYK JPEG, EXIF orientation 6 and 1, animated GIF, truncated JPEG, empty file,
  text file, PPM, the byte limit, PNG decompression bombs refused before decoding;
- tests/test_ground_truth.py: inverted corners, clipping, zero-area and outside boxes, NaN and
  non-numbers, empty lists, label trimming and length, the 500-box cap, the boxes JSON;
- tests/test_pipeline.py: no ground truth and no sampled RoI through the whole pipeline;
- tests/test_page_image.py: the table's non-numeric cells and ``explorer.text.plain``.

All images are made in memory; nothing is read from the internet.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from explorer.text import html_text, plain
from explorer.views.image import canvas_frame
from frcnn_core.anchor_targets import AnchorTargetParams, anchor_targets
from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.backbone import VGG16
from frcnn_core.detect import DetectParams, MatchParams, match_detections
from frcnn_core.ground_truth import MAX_LABEL_CHARS, clean_boxes, clean_label
from frcnn_core.image import MAX_FILE_BYTES, MAX_PIXELS, ImageError, ResizeParams, load_image
from frcnn_core.params import PipelineParams, parameter, validate
from frcnn_core.proposal_targets import ProposalTargetParams, proposal_targets
from frcnn_core.proposals import ProposalCounts, ProposalParams, propose
from frcnn_core.rpn import RPNParams, rpn_forward

ROOT = Path(__file__).resolve().parents[1]
REFUSED = r"damaged|truncated|not an image|cannot be decoded"
STRIDE = VGG16.stride


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel data is decoded (PIL decodes in ImageFile.load)."""

    def refuse(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# ---- damaged files: refused with a sentence, never another exception -------------------------


def damaged_files() -> dict[str, bytes]:
    png = encode(noise(64, 64))
    jpeg = encode(noise(64, 64), "JPEG")
    zeroed = bytearray(png)
    zeroed[100:140] = b"\0" * 40  # inside the IDAT chunk: its CRC and zlib stream break
    garbled = bytearray(jpeg)
    garbled[300:400] = b"\xff" * 100  # Huffman tables and scan header destroyed
    return {
        "png cut in half": png[: len(png) // 2],
        "png signature only": png[:8],
        "png cut inside the header": png[:20],
        "png with a zeroed data chunk": bytes(zeroed),
        "jpeg without its end marker": jpeg[:-2],
        "jpeg start marker only": jpeg[:2],
        "jpeg with garbled tables": bytes(garbled),
        "png signature then noise": png[:8] + bytes(range(256)) * 4,
        "jpeg markers then noise": jpeg[:20] + bytes(range(256)) * 4,
        "webp cut in half": encode(noise(64, 64), "WEBP")[:200],
    }


@pytest.mark.parametrize("name", list(damaged_files()))
def test_damaged_files_are_refused_with_a_sentence(name):
    with pytest.raises(ImageError, match=REFUSED) as caught:
        load_image(damaged_files()[name])
    message = str(caught.value)
    assert message.startswith("the upload ") and "\n" not in message


@pytest.mark.parametrize(
    "data",
    [
        b"<html><script>alert(1)</script></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b"%PDF-1.4\n" + b"\0" * 100,
        b"PK\x03\x04" + b"\0" * 100,  # a zip (e.g. a .docx)
        b'{"box": [1, 2, 3, 4]}',
        bytes(range(256)) * 8,
        b"\0",
    ],
    ids=["html", "svg", "pdf", "zip", "json", "binary", "one byte"],
)
def test_files_that_are_not_images(data):
    with pytest.raises(ImageError, match="not an image"):
        load_image(data)


@pytest.mark.parametrize(("fmt", "kwargs"), [("ICO", {}), ("TGA", {})])
def test_other_image_formats_name_the_format(fmt, kwargs):
    with pytest.raises(ImageError, match=fmt):
        load_image(encode(noise(16, 16), fmt, **kwargs))


# ---- odd but usable files: decoded, with a note -------------------------------------------


def test_animated_png_and_webp_use_the_first_frame():
    frames = [Image.new("RGB", (10, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    for fmt, kwargs in [("PNG", {}), ("WEBP", {"lossless": True})]:
        buf = io.BytesIO()
        frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], **kwargs)
        loaded = load_image(buf.getvalue())
        assert loaded.size == (6, 10), fmt
        assert loaded.pixels[3, 5].tolist() == [255, 0, 0], fmt  # frame 0 is red
        assert any("first of 3 frames" in n for n in loaded.notes), fmt


def test_gif_with_a_transparent_colour_is_flattened_onto_white():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    loaded = load_image(encode(img, "GIF", transparency=0))
    assert loaded.pixels[0, 0].tolist() == [255, 255, 255]
    assert loaded.pixels[1, 1].tolist() == [255, 0, 0]
    assert any("transparency" in n for n in loaded.notes)


def test_gray_with_alpha_and_one_bit_png():
    la = load_image(encode(Image.new("LA", (5, 4), (100, 0))))  # fully transparent gray
    assert la.pixels[0, 0].tolist() == [255, 255, 255]
    assert any("transparency" in n for n in la.notes)
    one = Image.new("1", (5, 4), 0)
    one.putpixel((2, 1), 1)
    bits = load_image(encode(one))
    assert bits.pixels[1, 2].tolist() == [255, 255, 255]
    assert bits.pixels[0, 0].tolist() == [0, 0, 0]
    assert any("grayscale" in n for n in bits.notes)


def test_sixteen_bit_rgba_png_is_flattened():
    import cv2

    bgra = np.zeros((3, 4, 4), dtype=np.uint16)
    bgra[..., 2] = 65535  # red, opaque on the left half, transparent on the right
    bgra[:, :2, 3] = 65535
    ok, buf = cv2.imencode(".png", bgra)
    assert ok
    loaded = load_image(buf.tobytes())
    assert loaded.pixels[1, 0].tolist() == [255, 0, 0]
    assert loaded.pixels[1, 3].tolist() == [255, 255, 255]


def test_integer_and_float_tiffs_are_stretched_to_eight_bits():
    ints = np.array([[0, 1000], [2000, 4000]], dtype=np.int32)
    loaded = load_image(encode(Image.fromarray(ints), "TIFF"))
    assert loaded.pixels[..., 0].tolist() == [[0, 64], [128, 255]]
    assert any("stretched" in n for n in loaded.notes)
    flat = load_image(encode(Image.fromarray(np.full((2, 3), 7.5, np.float32), "F"), "TIFF"))
    assert (flat.pixels == 0).all()  # a constant image has no range to stretch: black
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        nan = load_image(encode(Image.fromarray(np.full((2, 3), np.nan, np.float32)), "TIFF"))
    assert nan.pixels.shape == (2, 3, 3) and (nan.pixels == 0).all()


def test_grayscale_and_progressive_jpeg():
    gray = load_image(encode(Image.new("L", (9, 5), 77), "JPEG", quality=95))
    assert gray.size == (5, 9) and abs(int(gray.pixels[2, 4, 0]) - 77) <= 1
    assert any("grayscale" in n for n in gray.notes)
    progressive = load_image(encode(noise(32, 16), "JPEG", progressive=True))
    assert progressive.size == (16, 32) and progressive.notes == ()


# ---- EXIF rotation: shown upright, boxes in the upright frame -------------------------------

UPRIGHT_MARK = (10, 5, 30, 15)  # (x1, y1, x2, y2) of a red patch on a blue 60 x 40 picture
# The transpose that turns the upright picture into what a camera with this orientation stores.
STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_picture() -> np.ndarray:
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[..., 2] = 255
    x1, y1, x2, y2 = UPRIGHT_MARK
    pixels[y1:y2, x1:x2] = (255, 0, 0)
    return pixels


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_every_exif_orientation_is_shown_upright_with_boxes_on_it(orientation, prepare):
    upright = upright_picture()
    stored = Image.fromarray(upright).transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    loaded = load_image(encode(stored, "PNG", exif=exif.tobytes()))  # lossless: exact pixels
    np.testing.assert_array_equal(loaded.pixels, upright)
    assert any("EXIF orientation applied" in n for n in loaded.notes)
    # A box drawn on the upright picture lands on the red patch in the input frame (scale 1).
    prep = prepare(loaded.pixels, [list(UPRIGHT_MARK)], ["mark"], ResizeParams(40, 60))
    x1, y1, x2, y2 = (int(v) for v in prep.gt_boxes[0].tolist())
    assert (x1, y1, x2, y2) == UPRIGHT_MARK
    assert (prep.image.pixels[y1:y2, x1:x2] == (255, 0, 0)).all()


def test_broken_or_unknown_exif_does_not_refuse_the_photo():
    plain_jpeg = encode(Image.new("RGB", (40, 20), (9, 9, 9)), "JPEG")
    # An APP1 Exif segment whose IFD points past its end.
    app1 = b"\xff\xe1" + (18).to_bytes(2, "big") + b"Exif\0\0MM\0*\0\0\0\x08\xff\xff"
    with pytest.warns(UserWarning, match="EXIF"):
        broken = load_image(plain_jpeg[:2] + app1 + plain_jpeg[2:])
    assert broken.size == (20, 40)
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation: nothing to apply
    unknown = load_image(encode(Image.new("RGB", (40, 20)), "JPEG", exif=exif.tobytes()))
    assert unknown.size == (20, 40)


# ---- tiny and very thin images ------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 1), (8, 8), (4000, 20), (20, 4000)])
def test_tiny_and_thin_images_go_through_stage_one_and_labelling(width, height, prepare):
    loaded = load_image(encode(Image.new("RGB", (width, height), (30, 60, 90))))
    assert loaded.size == (height, width)
    frame = canvas_frame(loaded.size)
    assert 40 <= frame.width <= 760 and 40 <= frame.height <= 620  # a usable canvas
    box = [0, 0, width, height]  # the whole image
    prep = prepare(loaded.pixels, [box], ["all"], ResizeParams())
    assert prep.image.pixels.shape == (800, 800, 3)
    assert prep.gt_boxes.tolist() == [[0.0, 0.0, 800.0, 800.0]]
    grid = generate_anchors((50, 50), (800, 800), AnchorParams(), STRIDE)
    targets = anchor_targets(grid.anchors, grid.inside_index, prep.gt_boxes, AnchorTargetParams())
    assert targets.counts()["positive"] > 0  # the whole frame claims its best anchors


def test_thin_image_box_that_becomes_a_line_is_dropped_with_a_note(prepare):
    pixels = np.zeros((20, 4000, 3), np.uint8)
    # 2 px wide on a 4000-px axis: 0.4 px in the 800-px frame, truncated to nothing.
    prep = prepare(pixels, [[100, 2, 102, 18], [0, 0, 400, 20]], ["line", "ok"], ResizeParams())
    assert prep.labels == ("ok",)
    assert any("'line' vanished" in n for n in prep.notes)


# ---- decompression bombs in every container the uploader accepts --------------------------


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    data[6:8], data[8:10] = width.to_bytes(2, "little"), height.to_bytes(2, "little")
    block = data.index(b"\x2c")  # the image descriptor
    data[block + 5 : block + 7] = width.to_bytes(2, "little")
    data[block + 7 : block + 9] = height.to_bytes(2, "little")
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "BMP"))
    data[18:22], data[22:26] = width.to_bytes(4, "little"), height.to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("make", [jpeg_claiming, gif_claiming, bmp_claiming])
@pytest.mark.parametrize(("width", "height"), [(7000, 6000), (10000, 10000), (60000, 60000)])
def test_bombs_in_other_containers_are_refused_before_decoding(make, width, height, no_decoding):
    data = make(width, height)
    assert len(data) < 2000 and width * height > MAX_PIXELS
    with pytest.raises(ImageError, match="pixels"):
        load_image(data)


def test_a_large_but_allowed_image_is_decoded():
    # 6000 x 6000 = 36 MP of one colour: a 100 kB PNG that is under the limit and must decode.
    data = encode(Image.new("L", (6000, 6000), 200))
    assert len(data) < 200_000
    loaded = load_image(data)
    assert loaded.size == (6000, 6000) and loaded.pixels[3000, 3000].tolist() == [200] * 3


def test_upload_limit_is_within_the_decoders_byte_limit():
    """Whatever the image uploader lets through (its kind's limit, MB) the decoder accepts by
    size, so an oversized file is stopped by Streamlit's own clear message, never half-read.
    (The server's maxUploadSize is the largest kind's, a detector checkpoint.)"""
    from explorer.uploads import LIMITS_MB

    config = (ROOT / ".streamlit" / "config.toml").read_text()
    found = re.search(r"^\s*maxUploadSize\s*=\s*(\d+)", config, re.MULTILINE)
    assert found, "server.maxUploadSize is not set in .streamlit/config.toml"
    assert int(found.group(1)) == max(LIMITS_MB.values())
    assert LIMITS_MB["image"] * 2**20 <= MAX_FILE_BYTES
    with pytest.raises(ImageError, match="not an image"):  # at the limit: read, not refused
        load_image(b"\0" * MAX_FILE_BYTES)


# ---- boxes ---------------------------------------------------------------------------------

SIZE = (400, 600)  # (H, W)


def test_duplicate_boxes_are_all_kept_and_labelled_consistently(prepare):
    boxes = [[100, 100, 300, 300]] * 5 + [[50, 60, 70, 80]]
    labels = ["cat"] * 5 + ["dog"]
    gt = clean_boxes(boxes, labels, SIZE)
    assert gt.boxes.shape == (6, 4) and gt.notes == ()
    assert gt.class_names == ("cat", "dog") and gt.class_ids.tolist() == [1] * 5 + [2]
    prep = prepare(np.zeros((*SIZE, 3), np.uint8), boxes, labels, ResizeParams())
    grid = generate_anchors((50, 50), (800, 800), AnchorParams(), STRIDE)
    targets = anchor_targets(grid.anchors, grid.inside_index, prep.gt_boxes, AnchorTargetParams())
    # Five identical boxes share their best anchors: no anchor is counted twice.
    assert targets.counts()["positive"] == int((targets.labels_unsampled == 1).sum())
    assert torch.isfinite(targets.targets).all()


def test_whole_image_box_and_a_box_beyond_every_edge():
    gt = clean_boxes([[0, 0, 600, 400], [-1e6, -1e6, 1e6, 1e6]], ["all", "huge"], SIZE)
    assert gt.boxes.tolist() == [[0, 0, 600, 400], [0, 0, 600, 400]]
    assert gt.notes == ("box 2: clipped to the image",)


def test_hundreds_of_boxes_through_labelling_and_roi_sampling(prepare):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (400, 2))
    wh = rng.uniform(5, 120, (400, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).tolist()
    labels = [f"class {i % 7}" for i in range(400)]
    prep = prepare(np.zeros((*SIZE, 3), np.uint8), boxes, labels, ResizeParams())
    assert len(prep.labels) == prep.gt_boxes.shape[0] <= 400
    assert len(prep.class_names) == 7 and int(prep.gt_labels.max()) == 7
    grid = generate_anchors((50, 50), (800, 800), AnchorParams(), STRIDE)
    params = AnchorTargetParams()
    targets = anchor_targets(grid.anchors, grid.inside_index, prep.gt_boxes, params)
    c = targets.counts()
    assert c["sampled_positive"] + c["sampled_negative"] <= params.batch_size
    assert c["sampled_positive"] <= int(params.batch_size * params.pos_fraction)
    rois = grid.anchors[grid.inside_index].float()
    roi = proposal_targets(rois, prep.gt_boxes, prep.gt_labels, ProposalTargetParams())
    assert roi.labels.numel() <= 128 and int(roi.labels.max()) <= 7
    assert torch.isfinite(roi.targets).all()


def test_markup_in_labels_stays_text():
    nasty = "<b>x</b> **bold** [link](javascript:alert(1)) :red[r] $x^2$ <script>s</script>"
    label = clean_label(nasty)
    # Kept as the user typed it, only cut to length with a visible ellipsis.
    assert label == nasty[: MAX_LABEL_CHARS - 1] + "…"
    assert clean_label("two\nlines\tand  tabs") == "two lines and tabs"
    assert "<" not in html_text(nasty) and "&lt;script&gt;" in html_text(nasty)
    inert = plain(nasty)
    assert "<" not in inert.replace("\\<", "") and "**" not in inert.replace("\\*", "")


# ---- every parameter at its ends: stages empty out, nothing raises ---------------------------


def losses_are_finite(result) -> dict[str, float]:
    losses = result.losses.floats()
    assert all(math.isfinite(v) for v in losses.values()), losses
    return losses


@pytest.mark.parametrize(
    "params",
    [
        PipelineParams(anchor_targets=AnchorTargetParams(pos_iou=1.0)),
        PipelineParams(anchor_targets=AnchorTargetParams(pos_iou=0.05, neg_iou=0.95)),
        PipelineParams(anchor_targets=AnchorTargetParams(batch_size=16, pos_fraction=0.05)),
        PipelineParams(anchor_targets=AnchorTargetParams(batch_size=1024, pos_fraction=1.0)),
        PipelineParams(
            proposals=ProposalParams(nms_iou=0.0), train_proposals=ProposalCounts(post_nms=50)
        ),
        PipelineParams(
            proposals=ProposalParams(nms_iou=1.0), train_proposals=ProposalCounts(pre_nms=22500)
        ),
        PipelineParams(train_proposals=ProposalCounts(pre_nms=100, post_nms=10)),
        PipelineParams(proposals=ProposalParams(min_size=800.0)),
        PipelineParams(proposal_targets=ProposalTargetParams(roi_pos_iou=1.0)),
        PipelineParams(proposal_targets=ProposalTargetParams(roi_batch_size=8)),
        PipelineParams(
            proposal_targets=ProposalTargetParams(roi_batch_size=512, roi_pos_fraction=1.0)
        ),
        PipelineParams(
            proposal_targets=ProposalTargetParams(
                roi_pos_iou=1.0, roi_neg_iou_lo=0.95, roi_neg_iou_hi=0.05
            )
        ),
    ],
    ids=[
        "positive IoU 1",
        "negative above positive",
        "smallest anchor batch",
        "largest anchor batch",
        "NMS IoU 0",
        "NMS IoU 1 on every box",
        "fewest proposals",
        "min size 800: no proposal",
        "RoI positive IoU 1",
        "8 RoIs",
        "512 RoIs all positive",
        "no RoI at all",
    ],
)
def test_pipeline_survives_parameter_extremes(
    params, small_input, small_features, small_heads, run_stages
):
    assert validate(params) is params  # each extreme is a setting a user can reach
    result = run_stages(small_input, small_features, small_heads, params)
    losses_are_finite(result)
    c = result.anchor_targets.counts()
    assert c["sampled_positive"] + c["sampled_negative"] <= params.anchor_targets.batch_size
    kept = result.proposals.counts()["kept"]
    assert kept <= params.train_proposals.post_nms
    s = result.proposal_targets.labels.numel()
    assert s <= params.proposal_targets.roi_batch_size
    assert result.roi_pool.pooled.shape == (s, 512, 7, 7)
    assert result.head.scores.shape == (s, len(small_input.class_names) + 1)


def test_empty_stages_say_how_empty(small_input, small_features, small_heads, run_stages):
    args = (small_input, small_features, small_heads)
    unreachable = run_stages(*args, PipelineParams(anchor_targets=AnchorTargetParams(pos_iou=1.0)))
    c = unreachable.anchor_targets.counts()
    assert c["positive_from_threshold"] == 0 and c["positive"] == c["ties"] > 0
    no_proposals = run_stages(*args, PipelineParams(proposals=ProposalParams(min_size=800.0)))
    assert no_proposals.proposals.counts()["after_min_size"] == 0
    assert no_proposals.proposals.rois.shape == (0, 4)
    assert no_proposals.proposal_targets.labels.numel() == 0
    assert no_proposals.losses.floats()["roi_cls"] == 0.0
    assert no_proposals.test_proposals.rois.shape == (0, 4)
    assert no_proposals.detections.boxes.shape == (0, 4)
    no_positive = run_stages(
        *args, PipelineParams(proposal_targets=ProposalTargetParams(roi_pos_iou=1.0))
    )
    assert no_positive.proposal_targets.counts()["positive"] == 0
    assert no_positive.losses.floats()["roi_loc"] == 0.0


def test_nms_that_keeps_one_box(small_features, small_heads):
    rpn = rpn_forward(small_features, small_heads.rpn, RPNParams())
    # Every anchor is the same box and no delta moves it: NMS at any IoU keeps exactly one.
    same = torch.tensor([[100.0, 100.0, 200.0, 200.0]], dtype=torch.float64).repeat(3600, 1)
    for nms_iou in (0.0, 0.7, 0.99):
        params = ProposalParams(nms_iou=nms_iou)
        result = propose(
            same, torch.zeros_like(rpn.locs), rpn.scores, (320, 320), params, ProposalCounts()
        )
        assert result.counts()["after_nms"] == 1 and result.rois.shape == (1, 4)


@pytest.mark.parametrize(
    ("detect", "match"),
    [
        (DetectParams(score_threshold=0.99), MatchParams()),
        (DetectParams(score_threshold=0.0, class_nms_iou=1.0, max_detections=300), MatchParams()),
        (DetectParams(max_detections=1, class_nms_iou=0.05), MatchParams(match_iou=0.95)),
    ],
    ids=["threshold 0.99: nothing", "everything", "one detection"],
)
def test_detection_at_its_extremes(
    detect, match, small_input, small_features, small_heads, run_stages
):
    params = dataclasses.replace(PipelineParams(), detect=detect, match=match)
    assert validate(params) is params
    result = run_stages(small_input, small_features, small_heads, params)
    props = result.test_proposals
    assert props.post_nms_n == 300 and props.keep_index.numel() <= 300
    dets = result.detections
    n = int(dets.boxes.shape[0])
    assert n <= detect.max_detections
    assert dets.scores.numel() == dets.labels.numel() == n
    if detect.score_threshold >= 0.99:
        assert n == 0 and dets.candidates[1] == 0
    if detect.score_threshold == 0.0:
        # Every (class, RoI) pair is a candidate: 2 classes x the test-time proposals.
        assert dets.candidates[0] == dets.candidates[1] == 2 * props.keep_index.numel()
    found = result.detection_match
    assert int(found.true_positive.sum()) <= min(n, small_input.gt_boxes.shape[0])
    expected = match_detections(dets, small_input.gt_boxes, small_input.gt_labels, match.match_iou)
    assert torch.equal(found.true_positive, expected.true_positive)


LOW, HIGH = int(parameter("resize.height").low), int(parameter("resize.height").high)


@pytest.mark.parametrize(
    ("height", "width"), [(LOW, LOW), (HIGH, HIGH), (LOW, HIGH), (HIGH, LOW), (320, 1024)]
)
def test_input_frame_extremes(height, width, prepare):
    # The registry's ends for the input frame (160 and 1280) and a wide frame between them.
    pixels = np.zeros((300, 500, 3), np.uint8)
    prep = prepare(pixels, [[50, 50, 450, 250]], ["a"], ResizeParams(height, width))
    assert prep.image.pixels.shape == (height, width, 3)
    size = (height, width)
    grid = generate_anchors(VGG16.feature_size(size), size, AnchorParams(), VGG16.stride)
    targets = anchor_targets(grid.anchors, grid.inside_index, prep.gt_boxes, AnchorTargetParams())
    assert grid.inside > 0 and targets.counts()["positive"] > 0
