"""The Image & ground truth page: AppTest runs of the page, and its pure helpers.

AppTest cannot move a mouse, so the canvas is driven by seeding its widget state with the
drawing the browser would send; the table by seeding the data editor's edit state. Both are
what the browser sends, and the page reads them the same way.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer.figures import image_figure
from explorer.text import plain
from explorer.views.image import (
    CanvasFrame,
    apply_edits,
    boxes_to_canvas,
    boxes_to_rows,
    canvas_frame,
    canvas_to_boxes,
    check_upload,
    input_frame_figure,
    input_frame_text,
    merge_drawn,
    rows_table,
    signature,
    split_rows,
)
from frcnn_core.ground_truth import ground_truth
from frcnn_core.image import ImageError, ResizeParams, load_image, resize_image

APP = str(Path(__file__).resolve().parents[1] / "app.py")
ZEBRAS = [
    {"box": [223, 782, 623, 1074], "label": "zebra"},
    {"box": [597, 695, 1038, 1050], "label": "zebra"},
    {"box": [1088, 699, 1452, 1057], "label": "zebra"},
    {"box": [1544, 771, 1914, 1063], "label": "zebra"},
]
ZEBRA_TEXT = (
    "2000 x 1333 -> 800 x 800, sx = 0.4, sy = 0.6002; "
    "boxes truncated to whole pixels as the tutorial does"
)
SHOWN = "image_page:shown"


def png_bytes(width: int = 90, height: int = 60) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# -- the page in AppTest ----------------------------------------------------------------------


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()
    assert not app.exception, app.exception
    return app


def table_boxes(app: AppTest) -> list[list[float]]:
    df = app.data_editor[0].value
    return df[["x1", "y1", "x2", "y2"]].to_numpy().tolist()


def markdown_texts(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown]


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_zebras_sample_renders(at: AppTest) -> None:
    assert table_boxes(at) == [b["box"] for b in ZEBRAS]
    assert list(at.data_editor[0].value["label"]) == ["zebra"] * 4
    assert at.data_editor[0].editing_mode == "dynamic"
    assert f"**{ZEBRA_TEXT}**" in markdown_texts(at)
    assert metric(at, "Boxes used") == "4"
    assert metric(at, "Input frame (W x H)") == "800 x 800"
    assert any("Licence: CC0" in c.value for c in at.caption)
    # The input frame's boxes: the tutorial's scaled zebra boxes (SPEC section 3).
    frame = at.dataframe[1].value
    assert frame[["x1", "y1", "x2", "y2"]].to_numpy().tolist() == [
        [89, 469, 249, 644],
        [238, 417, 415, 630],
        [435, 419, 580, 634],
        [617, 462, 765, 637],
    ]
    # The canvas shows the session's boxes.
    assert at.session_state[SHOWN]["sig"] == signature(ZEBRAS)


def test_choosing_another_sample_changes_the_boxes(at: AppTest) -> None:
    at.selectbox(key="image_page:sample").set_value("astronaut").run()
    assert not at.exception
    assert at.session_state["image"].name == "astronaut"
    labels = list(at.data_editor[0].value["label"])
    assert labels == ["person", "helmet", "flag", "space shuttle"]
    # The next box's label follows the new image, not the zebras.
    assert at.text_input(key="image_page:label_widget").value == "space shuttle"
    assert table_boxes(at) == [b["box"] for b in at.session_state["boxes"]]
    assert any("Public domain" in c.value for c in at.caption)
    assert markdown_texts(at)[-1].startswith("**512 x 512 -> 800 x 800, sx = 1.562")
    assert at.session_state[SHOWN]["sig"] == signature(at.session_state["boxes"])


def test_boxes_set_in_session_state_are_shown(at: AppTest) -> None:
    key_before = at.session_state[SHOWN]["key"]
    at.session_state["boxes"] = [{"box": [100, 200, 700, 900], "label": "horse"}]
    at.run()
    assert table_boxes(at) == [[100, 200, 700, 900]]
    assert list(at.data_editor[0].value["label"]) == ["horse"]
    assert metric(at, "Classes") == "1"
    # The boxes changed from outside the canvas: it is remounted (new key) with them.
    shown = at.session_state[SHOWN]
    assert shown["key"] != key_before
    assert shown["sig"] == (("horse", (100.0, 200.0, 700.0, 900.0)),)
    objects = shown["drawing"]["objects"]
    assert len(objects) == 1 and objects[0]["label"] == "horse"
    margin = shown["frame"].margin  # the picture sits in a grey margin on the canvas
    assert objects[0]["left"] == pytest.approx(100 / (2000 / 760) + margin)


def test_a_drawn_box_updates_the_session_without_remounting_the_canvas(at: AppTest) -> None:
    shown = at.session_state[SHOWN]
    key = shown["key"]
    objects = [*shown["drawing"]["objects"]]
    # What the browser sends after a stroke: the four boxes plus a new one, drawn at scale 1,
    # and one of the old boxes stretched by the user (scaleX = 2).
    objects[0] = {**objects[0], "scaleX": 2}
    m = shown["frame"].margin  # canvas coordinates count from the margin's corner
    objects.append(
        {
            "type": "LabeledRect",
            "label": "sky",
            "left": 76 + m,
            "top": 38 + m,
            "width": 190,
            "height": 76,
        }
    )
    at.session_state[key] = {"drawing": {"raw": {"objects": objects}, "data": None}}
    at.run()
    assert not at.exception
    boxes = at.session_state["boxes"]
    assert len(boxes) == 5
    assert boxes[4] == {
        "box": [200.0, round(38 * 1333 / 507, 1), 700.0, round(114 * 1333 / 507, 1)],
        "label": "sky",
    }
    assert boxes[0]["box"] == [223, 782, 1023.0, 1074]  # twice as wide
    assert boxes[1:4] == ZEBRAS[1:]  # untouched boxes keep their exact values
    assert at.session_state[SHOWN]["key"] == key  # not remounted: the drag goes on
    assert len(table_boxes(at)) == 5


def test_table_edits_update_the_boxes(at: AppTest) -> None:
    key = at.data_editor[0].key
    at.session_state[key] = {
        "edited_rows": {0: {"x1": 100.0}, 1: {"label": "  foal "}},
        "added_rows": [{"label": "cat", "x1": 1, "y1": 2, "x2": 30, "y2": 40}],
        "deleted_rows": [3],
    }
    at.run()
    assert not at.exception
    assert at.session_state["boxes"] == [
        {"box": [100.0, 782, 623, 1074], "label": "zebra"},
        {"box": [597, 695, 1038, 1050], "label": "foal"},
        {"box": [1088, 699, 1452, 1057], "label": "zebra"},
        {"box": [1.0, 2.0, 30.0, 40.0], "label": "cat"},
    ]
    assert metric(at, "Classes") == "3"
    # The editor keeps its own edits (same key, same input table); the canvas is remounted.
    assert at.data_editor[0].key == key
    assert at.session_state[SHOWN]["sig"] == signature(at.session_state["boxes"])
    # A change from elsewhere restarts the editor from the session's boxes.
    at.session_state["boxes"] = [{"box": [5, 6, 70, 80], "label": "dog"}]
    at.run()
    assert at.data_editor[0].key != key
    assert table_boxes(at) == [[5, 6, 70, 80]]


def test_an_incomplete_row_is_kept_and_reported(at: AppTest) -> None:
    key = at.data_editor[0].key
    # What the editor sends as the user fills a new row, one cell at a time.
    at.session_state[key] = {"added_rows": [{"label": "cat", "x1": 10, "y1": 20}]}
    at.run()
    assert not at.exception
    assert at.session_state["boxes"] == ZEBRAS  # nothing lost, nothing invented
    assert at.data_editor[0].key == key  # the user can go on typing in the new row
    warnings = [w.value for w in at.warning]
    assert any("Row 5" in w and "cat" in w and "x2, y2" in w for w in warnings)
    at.session_state[key] = {
        "added_rows": [{"label": "cat", "x1": 10, "y1": 20, "x2": 50, "y2": 60}]
    }
    at.run()
    assert at.session_state["boxes"][-1] == {"box": [10.0, 20.0, 50.0, 60.0], "label": "cat"}
    assert not any("Row 5" in w.value for w in at.warning)


def test_an_incomplete_row_survives_a_canvas_change_and_a_page_switch(at: AppTest) -> None:
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {1: {"y1": None}}}
    at.run()
    assert [b["box"] for b in at.session_state["boxes"]] == [ZEBRAS[i]["box"] for i in (0, 2, 3)]
    at.switch_page("app_pages/bugs.py").run()
    at.switch_page("app_pages/image.py").run()
    assert not at.exception
    table = at.data_editor[0].value
    assert len(table) == 4 and np.isnan(table["y1"].iloc[3])  # kept, at the bottom
    assert any("Row 4" in w.value and "y1" in w.value for w in at.warning)


def test_a_bad_upload_keeps_the_image_and_boxes(at: AppTest) -> None:
    before = at.session_state["image"]
    at.file_uploader(key="image_page:upload").set_value(("notes.png", b"hello", "image/png"))
    at.run()
    assert not at.exception
    assert at.session_state["image"] is before
    assert at.session_state["boxes"] == ZEBRAS
    messages = [w.value for w in at.warning]
    assert any("notes\\.png" in m and "its boxes are kept" in m for m in messages)
    assert len(table_boxes(at)) == 4


def test_a_good_upload_starts_with_no_boxes(at: AppTest) -> None:
    assert at.text_input(key="image_page:label_widget").value == "zebra"
    at.file_uploader(key="image_page:upload").set_value(("mine.png", png_bytes(), "image/png"))
    at.run()
    assert not at.exception
    assert at.session_state["image"].name == "mine.png"
    assert at.session_state["boxes"] == []
    assert len(at.data_editor[0].value) == 0
    assert any("No boxes yet" in i.value for i in at.info)
    assert at.text_input(key="image_page:label_widget").value == "object"
    assert markdown_texts(at)[-1].startswith("**90 x 60 -> 800 x 800")


def test_loading_and_cleaning_notes_are_shown(at: AppTest) -> None:
    img = Image.fromarray(np.full((40, 120, 3), 200, np.uint8))  # 120 wide, 40 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown upright, 40 wide and 120 tall
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    at.file_uploader(key="image_page:upload").set_value(("side.jpg", buf.getvalue(), "image/jpeg"))
    at.run()
    assert metric(at, "Original (W x H)") == "40 x 120"
    at.session_state["boxes"] = [
        {"box": [30, 100, -5, 140], "label": "a"},
        {"box": [50, 50, 60, 60], "label": "**b**"},
    ]
    at.run()
    notes = [i.value for i in at.info]
    assert any("EXIF orientation applied" in n for n in notes)
    assert any("box 1" in n and "swapped" in n for n in notes)
    assert any("box 1" in n and "clipped" in n for n in notes)
    assert any("box 2 dropped" in n for n in notes)
    assert metric(at, "Boxes used") == "1"


def test_an_unreadable_current_image_still_offers_the_samples(at: AppTest) -> None:
    from explorer.state import ImageChoice, digest_of

    at.session_state["image"] = ImageChoice("junk.png", b"junk", digest_of(b"junk"), False)
    at.run()
    assert not at.exception
    assert any("cannot be used" in e.value for e in at.error)
    at.selectbox(key="image_page:sample").set_value("zebras").run()
    assert not at.error and at.session_state["boxes"] == ZEBRAS


def test_clear_all_boxes(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Clear all boxes").click().run()
    assert at.session_state["boxes"] == []
    assert metric(at, "Boxes used") == "0"


def test_boxes_persist_across_page_switches(at: AppTest) -> None:
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {2: {"y2": 1100.0}}}
    at.run()
    boxes = at.session_state["boxes"]
    at.switch_page("app_pages/bugs.py").run()
    at.switch_page("app_pages/image.py").run()
    assert not at.exception
    assert at.session_state["boxes"] == boxes
    assert table_boxes(at)[2] == [1088, 699, 1452, 1100]
    assert at.session_state[SHOWN]["sig"] == signature(boxes)


def test_input_size_and_truncation_sliders(at: AppTest) -> None:
    at.slider(key="w:resize.width").set_value(640).run()
    assert markdown_texts(at)[-1].startswith("**2000 x 1333 -> 640 x 800, sx = 0.32, sy = 0.6002")
    at.toggle(key="w:resize.truncate_boxes").set_value(False).run()
    assert markdown_texts(at)[-1].endswith("boxes kept as floats (not truncated)**")
    assert at.dataframe[1].value["x1"].iloc[0] == pytest.approx(223 * 0.32)


# -- pure helpers -----------------------------------------------------------------------------


def test_canvas_frame_keeps_the_aspect_and_fits() -> None:
    frame = canvas_frame((1333, 2000))
    assert (frame.width, frame.height) == (760, 507)
    assert frame.fx == pytest.approx(2000 / 760) and frame.fy == pytest.approx(1333 / 507)
    tall = canvas_frame((4000, 500))
    assert tall.height == 620 and tall.width == 78
    thin = canvas_frame((1, 5000))
    assert thin.height == 40  # never thinner than a usable strip


def test_canvas_round_trip_is_exact_to_a_tenth_of_a_pixel() -> None:
    frame = canvas_frame((1333, 2000))
    boxes = [*ZEBRAS, {"box": [10.3, 20.7, 500.1, 300.9], "label": "x"}]
    assert canvas_to_boxes(boxes_to_canvas(boxes, frame), frame) == [
        {"box": [float(v) for v in b["box"]], "label": b["label"]} for b in boxes
    ]


def test_boxes_to_canvas_orders_corners_and_skips_non_numbers() -> None:
    frame = CanvasFrame(100, 100, 2.0, 4.0)
    out = boxes_to_canvas(
        [{"box": [40, 80, 20, 40], "label": "a"}, {"box": [1, float("nan"), 3, 4], "label": "b"}],
        frame,
    )
    assert out == [{"label": "a", "left": 10.0, "top": 10.0, "width": 10.0, "height": 10.0}]


def test_merge_drawn_keeps_exact_values_of_unchanged_boxes() -> None:
    current = [{"box": [10.04, 20, 30, 40], "label": "a"}, {"box": [1, 2, 3, 4], "label": "b"}]
    drawn = [
        {"box": [1.0, 2.0, 3.0, 4.0], "label": "b"},
        {"box": [10.0, 20.0, 30.0, 40.0], "label": "a"},
        {"box": [5.0, 5.0, 9.0, 9.0], "label": "new"},
    ]
    assert merge_drawn(current, drawn) == [current[1], current[0], drawn[2]]


def test_table_edits_and_split() -> None:
    rows = boxes_to_rows(ZEBRAS[:2])
    edited = apply_edits(
        rows,
        {
            "edited_rows": {"1": {"x1": None}},
            "added_rows": [{"x1": 1, "y1": 2, "x2": 3, "y2": 4}, {}],
            "deleted_rows": [0],
        },
    )
    result = split_rows(edited, default_label="next")
    assert result.boxes == [{"box": [1.0, 2.0, 3.0, 4.0], "label": "next"}]
    assert result.pending == [
        {"label": "zebra", "x1": None, "y1": 695.0, "x2": 1038.0, "y2": 1050.0},
        {"label": None, "x1": None, "y1": None, "x2": None, "y2": None},
    ]
    assert result.messages[0].startswith("Row 1 (“zebra”) has no number in x1:")
    assert result.messages[1].startswith("Row 3 has no number in x1, y1, x2, y2:")
    table = rows_table(result.pending)
    assert list(table.columns) == ["label", "x1", "y1", "x2", "y2"]
    assert str(table["x1"].dtype) == "float64" and list(table["label"]) == ["zebra", ""]
    assert str(rows_table([])["x1"].dtype) == "float64"


def test_non_numeric_cells_are_not_boxes() -> None:
    result = split_rows([{"label": "a", "x1": "ten", "y1": 1, "x2": float("inf"), "y2": True}])
    assert result.boxes == [] and len(result.pending) == 1
    assert "x1, x2, y2" in result.messages[0]


def test_check_upload_reports_instead_of_raising() -> None:
    bad = check_upload("cat.jpg", b"\x00" * 10, load_image)
    assert bad.loaded is None
    assert bad.error.startswith("“cat.jpg” cannot be used:")
    assert bad.error.endswith("The previous image and its boxes are kept.")
    empty = check_upload("e.png", b"", load_image)
    assert "empty" in empty.error
    good = check_upload("g.png", png_bytes(), load_image)
    assert good.error is None and good.loaded.size == (60, 90)

    def broken(_: bytes):
        raise ImageError("it is broken.")

    assert "it is broken." in check_upload("b.png", b"x", broken).error


def test_plain_makes_markdown_inert() -> None:
    zw = "\u200b"
    assert plain("**bold** [x](javascript:alert(1)) :red[r] $x$ <b>") == (
        rf"\*\*bold\*\* \[x\]\(javascript\:{zw}alert\(1\)\) \:{zw}red\[r\] \$x\$ \<b\>"
    )
    assert plain(":material/home: 12:30") == rf"\:{zw}material/home\: 12\:30"


def test_input_frame_text_and_figure() -> None:
    pixels = np.zeros((1333, 2000, 3), np.uint8)
    boxes = [b["box"] for b in ZEBRAS]
    image = resize_image(pixels, ResizeParams())
    gt = ground_truth(boxes, ["<b>z</b>"] * 4, (1333, 2000), ResizeParams())
    assert input_frame_text(image, True) == ZEBRA_TEXT
    fig = input_frame_figure(image, gt)
    outline, labels = fig.data[1], fig.data[2]
    assert outline.type == "scatter" and outline.mode == "lines"
    xs = np.asarray(outline.x, dtype=float)
    assert np.nanmin(xs) == 89 and np.nanmax(xs) == 765
    assert list(labels.text) == ["&lt;b&gt;z&lt;/b&gt;"] * 4
    small = ResizeParams(height=400, width=600)
    empty_image = resize_image(pixels, small)
    empty = ground_truth([], [], (1333, 2000), small)
    assert input_frame_text(empty_image, False).startswith("2000 x 1333 -> 600 x 400, sx = 0.3, ")
    assert len(input_frame_figure(empty_image, empty).data) == 2
    assert torch.equal(empty.boxes, torch.zeros(0, 4))


def test_image_figure_places_the_picture_behind_the_axes_in_pixel_coordinates() -> None:
    # A 30 x 20 (W x H) picture: the layout image spans x 0..30 and y 0..20 with y pointing
    # down (range [20, 0]), so box coordinates in pixels land on the right pixels.
    pixels = np.full((20, 30, 3), 200, np.uint8)
    fig = image_figure(pixels, dim=0.5)
    (picture,) = fig.layout.images
    assert (picture.x, picture.y, picture.sizex, picture.sizey) == (0, 0, 30, 20)
    assert (picture.xanchor, picture.yanchor, picture.layer) == ("left", "top", "below")
    assert list(fig.layout.xaxis.range) == [0, 30] and list(fig.layout.yaxis.range) == [20, 0]
    assert all(trace.type != "image" for trace in fig.data)
    # The JPEG carries the dimmed pixels: 200 * 0.5 = 100 (give or take JPEG rounding).
    payload = base64.b64decode(picture.source.split(",", 1)[1])
    decoded = np.asarray(Image.open(io.BytesIO(payload)))
    assert decoded.shape == (20, 30, 3) and abs(float(decoded.mean()) - 100) < 2
