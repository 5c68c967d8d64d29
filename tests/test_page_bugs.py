"""The Tutorial bugs page (9), run headless with AppTest, and its effect functions called directly.

Every bug shows the same metric labels twice, fixed (left column) then tutorial (right), so the
tests read a label's values in page order. The zebra numbers (SPEC sections 3 and 4) depend only
on the boxes, not on the pixels or the random weights."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer.bugs import effects
from explorer.bugs.catalogue import BUG_FLAGS, BUGS, with_bug
from frcnn_core.anchor_targets import anchor_targets
from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.params import PipelineParams

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "app_pages/bugs.py"
TRANSCRIPT = Path(__file__).resolve().parents[2] / "shared" / "reference"


def values(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def page_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [i.value for i in at.info] + [c.value for c in at.code]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()  # state.init(): the zebras sample with its four boxes
    assert app.session_state["image"].name == "zebras"
    app.switch_page(PAGE)
    app.run()
    return app


def choose(at: AppTest, bug_id: str) -> AppTest:
    at.selectbox(key="bug").set_value(bug_id).run()
    assert not at.exception, at.exception
    assert not [e for e in at.error if "went wrong" in e.value], [e.value for e in at.error]
    return at


def test_page_renders_summary_and_first_bug(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert at.title[0].value == "Tutorial bugs"
    table = at.dataframe[0].value
    assert list(table["id"]) == [f"B{i}" for i in range(1, 14)]
    assert at.selectbox(key="bug").value == "B1"
    # B1: on the 50 x 50 map only the 50 diagonal cells keep their own prediction.
    assert values(at, "Cells paired with their own prediction") == ["2,500 / 2,500", "50 / 2,500"]
    assert not at.session_state["params"].anchors.bug_b1_x_outer


def test_b3_sampled_negatives(at: AppTest) -> None:
    choose(at, "B3")
    assert [number(v) for v in values(at, "Sampled negatives")] == [211, 7469]
    assert [number(v) for v in values(at, "Sampled positives")] == [45, 45]
    assert at.session_state["params"] == PipelineParams()  # the page switched no bug on


def test_b5_smooth_l1_with_zero_predictions(at: AppTest) -> None:
    choose(at, "B5")
    fixed, tutorial = (number(v) for v in values(at, "smoothL1 sum, zero predictions"))
    assert fixed == pytest.approx(5.199, abs=0.005)
    assert tutorial == pytest.approx(16.17, abs=0.005)


def test_b2_small_box_demonstration(at: AppTest) -> None:
    choose(at, "B2")
    fixed, tutorial = (int(v) for v in values(at, "Positive anchors of the 40 × 30 box"))
    assert tutorial == 0
    assert fixed >= 1
    # The zebras' best IoUs are all above 0.3: no box loses its positives.
    assert "No box loses its positives" in page_text(at)


def test_b2_slider_exposes_the_bug_on_the_users_boxes(at: AppTest) -> None:
    choose(at, "B2")
    at.slider(key="w:bugs:anchor_targets.neg_iou").set_value(0.55).run()
    assert not at.exception
    assert any("no positive anchor" in w.value for w in at.warning)
    # The what-if is the page's own: the pipeline's setting (the other pages') is unchanged.
    assert at.session_state["params"].anchor_targets.neg_iou == 0.3
    at.switch_page("app_pages/labelling.py").run()
    assert at.slider(key="w:anchor_targets.neg_iou").value == 0.3
    at.switch_page("app_pages/bugs.py").run()
    assert at.slider(key="w:bugs:anchor_targets.neg_iou").value == 0.55  # kept for this page
    at.slider(key="w:bugs:anchor_targets.neg_iou").set_value(0.3).run()


def test_b4_not_triggered_then_triggered(at: AppTest) -> None:
    choose(at, "B4")
    text = page_text(at)
    assert "Not triggered on this image: only 45 positives" in text
    assert "129 - 128.0" in text  # the fixed demonstration still shows the TypeError
    at.slider(key="w:bugs:anchor_targets.pos_iou").set_value(0.5).run()
    assert any("TypeError" in e.value for e in at.error)
    assert at.session_state["params"].anchor_targets.pos_iou == 0.7  # the user's setting
    at.slider(key="w:bugs:anchor_targets.pos_iou").set_value(0.7).run()


def test_b12_shows_the_error(at: AppTest) -> None:
    choose(at, "B12")
    errors = [e.value for e in at.error]
    assert any("UnreducedLossError" in e and "grad can be implicitly created" in e for e in errors)
    assert values(at, "RoI loc loss")  # the fixed loss is a scalar


@pytest.mark.parametrize("bug_id", ["B6", "B7", "B8", "B9", "B10", "B11", "B13"])
def test_other_bugs_render(at: AppTest, bug_id: str) -> None:
    choose(at, bug_id)
    assert at.header[0].value.startswith(bug_id)


def test_b8_overlap_is_partial(at: AppTest) -> None:
    choose(at, "B8")
    common, total = values(at, "Tutorial's proposals also kept by the fixed pipeline")[0].split(
        " / "
    )
    assert 0 < number(common) < number(total)


def test_b6_linearity_numbers(at: AppTest) -> None:
    choose(at, "B6")
    fixed, tutorial = (float(v) for v in values(at, "Non-linearity |f(a+b) − f(a) − f(b) + f(0)|"))
    assert tutorial < 1e-5 < 1e-2 < fixed


# --- the effect functions, without a browser -----------------------------------------------------


def test_with_bug_leaves_params_untouched() -> None:
    params = PipelineParams()
    for bug_id in BUG_FLAGS:
        on = with_bug(params, bug_id, True)
        assert on != params
        assert with_bug(on, bug_id, False) == params
    assert params == PipelineParams()
    assert not with_bug(params, "B13", True).backbone.normalize


def test_original_code_is_quoted_from_the_transcript() -> None:
    path = TRANSCRIPT / "faster_rcnn_tutorial.txt"
    if not path.is_file():
        pytest.skip("transcript not available")
    squash = "".join(path.read_text(encoding="utf-8").split())
    for bug in BUGS:
        if bug.id == "B5":  # SPEC records the line; the transcript copy prints a minus there
            continue
        for line in bug.original.splitlines():
            line = line.split("  # ")[0]  # the page's own pointers ("# pooling")
            if line.strip() and line.strip() != "...":
                assert "".join(line.split()) in squash, (bug.id, line)


def test_small_box_and_float_count_demonstrations() -> None:
    demo = effects.small_box_demo()
    assert demo.tutorial_positives == 0 < demo.fixed_positives
    assert demo.best_iou < 0.3
    count = effects.float_count_demo()
    assert count.positives == 129
    assert count.error is not None and "TypeError" in count.error


def test_pairing_effect_on_a_rectangular_map() -> None:
    """On a 3 x 5 map a cell keeps its own prediction when its row-major number 5 * iy + ix
    equals its x-outer number 3 * ix + iy, i.e. ix = 2 * iy: (0, 0), (1, 2) and (2, 4)."""
    params = AnchorParams(scales=(1.0,), ratios=(1.0,))
    row_major = generate_anchors((3, 5), (48, 80), params, 16)
    b1 = dataclasses.replace(params, bug_b1_x_outer=True)
    x_outer = generate_anchors((3, 5), (48, 80), b1, 16)
    gt = torch.zeros((0, 4))
    targets = anchor_targets(
        x_outer.anchors, x_outer.inside_index, gt, PipelineParams().anchor_targets
    )
    effect = effects.pairing_effect(x_outer, targets, row_major, gt)
    assert effect.cells == 15
    assert effect.self_paired == 3


def test_b13_feature_comparison_behind_toggle(at: AppTest) -> None:
    choose(at, "B13")
    assert not values(at, "Cosine similarity of the feature maps")  # nothing computed yet
    at.toggle(key="bug_b13_features").set_value(True).run()
    assert not at.exception
    (cosine,) = values(at, "Cosine similarity of the feature maps")
    assert -1.0 <= float(cosine) < 1.0
    at.toggle(key="bug_b13_features").set_value(False).run()
