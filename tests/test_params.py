"""The settings: one registry entry per field, defaults read from the dataclasses, values checked
against one range everywhere, derived sizes refused with what they follow from, and the command
line's ``--set`` built on the same registry (one line and exit 2 for anything it refuses)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from frcnn_core.cli import main
from frcnn_core.params import (
    BY_PATH,
    PARAMETERS,
    ParamsError,
    PipelineParams,
    field_paths,
    parameter,
    resolve,
    validate,
)
from frcnn_core.pipeline import PIPELINE
from frcnn_core.production_graph import PRODUCTION

ROOT = Path(__file__).resolve().parents[1]
ZEBRAS = ROOT / "sample_images" / "zebras.jpg"
ZEBRA_BOXES = ROOT / "sample_images" / "zebras.json"


def test_every_field_has_exactly_one_registry_entry() -> None:
    paths = [p.path for p in PARAMETERS]
    assert len(paths) == len(set(paths))
    assert set(paths) == set(field_paths())


def test_every_group_is_read_by_a_stage() -> None:
    """Of the tutorial's graph or the production detector's; every group is read."""
    read = {g for graph in (PIPELINE, PRODUCTION) for stage in graph for g in stage.params}
    assert read == {p.group for p in PARAMETERS}
    assert {f.name for f in dataclasses.fields(PipelineParams)} == read


def test_defaults_are_the_dataclasses_and_valid() -> None:
    default = PipelineParams()
    validate(default)
    for p in PARAMETERS:
        assert p.default == default.get(p.path)
        assert p.check(p.default) == p.default, p.path
        assert p.label and p.help.endswith("."), p.path
    assert parameter("proposals.nms_iou").default == 0.7
    assert parameter("train_proposals.pre_nms").default == 12000
    assert parameter("test_proposals.post_nms").default == 300
    assert parameter("anchors.scales").default == (8.0, 16.0, 32.0)


def test_slider_ranges_hold_their_default_and_step() -> None:
    for p in PARAMETERS:
        if p.kind in ("float", "int"):
            assert p.low <= p.default <= p.high, p.path
            assert p.step > 0 and (p.high - p.low) / p.step <= 1000, p.path


@pytest.mark.parametrize(
    ("path", "text", "value"),
    [
        ("proposals.nms_iou", "0.6", 0.6),
        ("resize.height", "320", 320),
        ("backbone.normalize", "false", False),
        ("anchors.scales", "32,8,16,8", (8.0, 16.0, 32.0)),  # sorted, de-duplicated
        ("roi_pool.method", "align", "align"),
        ("anchor_targets.seed", "7", 7),
    ],
)
def test_parse_reads_each_kind(path: str, text: str, value) -> None:
    assert BY_PATH[path].parse(text) == value


@pytest.mark.parametrize(
    ("path", "text", "message"),
    [
        ("proposals.nms_iou", "1.5", "between 0 and 1"),
        ("proposals.nms_iou", "nan", "finite"),
        ("resize.height", "20", "between 160 and 1280"),
        ("resize.height", "320.5", "not a whole number"),
        ("backbone.normalize", "maybe", "true or false"),
        ("anchors.scales", "", "at least one value"),
        ("anchors.scales", "1,2,3,4,5,6,7", "at most 6"),
        ("anchors.ratios", "0.01", "between 0.1 and 10"),
        ("roi_pool.method", "bilinear", "one of pool, align"),
        ("anchor_targets.seed", "-1", "at least 0"),
        ("roi_pool.output_size", "50", "between 1 and 10"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(path: str, text: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message) as info:
        BY_PATH[path].parse(text)
    assert info.value.path == path
    assert "\n" not in str(info.value)


def test_names_resolve_to_one_setting_or_say_why_not() -> None:
    assert resolve("nms_iou").path == "proposals.nms_iou"
    assert resolve("proposal_targets.seed").path == "proposal_targets.seed"
    with pytest.raises(ParamsError, match=r"ambiguous: use one of rpn_loss\.loss_lambda"):
        resolve("loss_lambda")
    with pytest.raises(ParamsError, match=r"train_proposals\.pre_nms, test_proposals\.pre_nms"):
        resolve("pre_nms")
    with pytest.raises(ParamsError, match="unknown setting 'nope'"):
        resolve("nope")
    for derived, why in [
        ("stride", "backbone's stride"),
        ("anchors.stride", "backbone's stride"),
        ("spatial_scale", "1 / the backbone's stride"),
        ("roi_pool.spatial_scale", "1 / the backbone's stride"),
        ("feature_size", "input frame"),
        ("in_features", "channels × pooled size"),
        ("per_cell", "scales × the number of ratios"),
    ]:
        with pytest.raises(ParamsError, match=f"{derived.split('.')[-1]} is derived") as info:
            resolve(derived)
        assert why in str(info.value)


def test_impossible_combinations_are_refused() -> None:
    many = PipelineParams().replace("anchors.scales", (1.0, 2.0, 4.0, 8.0, 16.0, 32.0))
    many = many.replace("anchors.ratios", tuple(float(r) for r in range(1, 7)))
    validate(many)  # 36 anchors per cell is fine
    with pytest.raises(ParamsError, match="must be between"):
        validate(PipelineParams().replace("proposals.min_size", -1.0))
    with pytest.raises(ParamsError) as info:
        PipelineParams().with_overrides({"height": "100"})
    assert info.value.path == "resize.height"


def test_changed_lists_what_differs_from_the_tutorial() -> None:
    params = PipelineParams().with_overrides({"nms_iou": "0.5", "train_proposals.post_nms": "100"})
    assert params.changed() == {"proposals.nms_iou": 0.5, "train_proposals.post_nms": 100}
    assert PipelineParams().changed() == {}
    assert math.isclose(params.get("proposals.nms_iou"), 0.5)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["summarize", "--image", str(ZEBRAS), "--boxes", str(ZEBRA_BOXES), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("stride=8", "error: stride is derived, not a setting: it follows from the backbone"),
        ("spatial_scale=0.125", "error: spatial_scale is derived"),
        ("output_size=50", "error: roi_pool.output_size must be between 1 and 10 (got 50)"),
        ("nms_iou=2", "error: proposals.nms_iou must be between 0 and 1 (got 2)"),
        ("pre_nms=5000", "error: 'pre_nms' is ambiguous"),
        ("scales=", "error: anchors.scales needs at least one value"),
        ("height=abc", "error: resize.height='abc' is not a whole number"),
        ("bogus=1", "error: unknown setting 'bogus'"),
        ("nms_iou", "error: --set takes name=value"),
    ],
)
def test_set_refuses_with_one_line_and_exit_2(capsys, setting: str, message: str) -> None:
    code, out, err = cli(capsys, "--weights", "random", "--set", setting)
    assert code == 2
    assert out == ""
    assert err.startswith(message), err
    assert err.count("\n") == 1  # one line, no traceback


def test_a_pooled_size_of_5_runs_end_to_end() -> None:
    """``--set output_size=5``: the head's input width follows (512 x 5 x 5), losses finite."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "frcnn_core",
            "summarize",
            "--image",
            str(ZEBRAS),
            "--boxes",
            str(ZEBRA_BOXES),
            "--weights",
            "random",
            "--set",
            "output_size=5",
            "--set",
            "height=320",
            "--set",
            "width=320",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert summary["roi_pool"][1:] == [512, 5, 5]
    assert summary["feature_map"] == [512, 20, 20]  # 320 / 16
    assert all(math.isfinite(v) for v in summary["losses"].values())
    assert summary["losses"]["roi_cls"] > 0
