"""Every setting of the pipeline, and the one registry of the user-facing ones.

:class:`PipelineParams` holds one frozen dataclass per parameter group. Each stage of the graph
(:mod:`frcnn_core.pipeline`) declares the groups it reads, so a cache key built from them can
never miss a setting (:mod:`frcnn_core.graph`).

:data:`PARAMETERS` describes each setting once for people: its label, range, step, help text
and the tutorial's default (read from the dataclasses, never typed twice). Every slider of the
app, "reset to tutorial defaults" and the command line's ``--set`` are built from it, so a
setting has one definition and one valid range everywhere.

Sizes that follow from the network are not settings (:data:`DERIVED`): the stride and the
channels come from the backbone (:class:`frcnn_core.backbone.BackboneSpec`), the RoI pooling
scale is one over the stride, the feature map's size follows from the input frame, and the
head's input width is channels x pooled size squared.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from frcnn_core.anchor_targets import AnchorTargetParams
from frcnn_core.anchors import AnchorParams
from frcnn_core.backbone import VGG16, BackboneParams, BackboneSpec
from frcnn_core.detect import DetectParams, MatchParams
from frcnn_core.head import HeadLossParams, HeadParams
from frcnn_core.image import ResizeParams
from frcnn_core.production_params import ProductionInputParams, ProductionParams
from frcnn_core.proposal_targets import ProposalTargetParams
from frcnn_core.proposals import TEST_COUNTS, ProposalCounts, ProposalParams
from frcnn_core.roi_pool import POOL_METHODS, RoIPoolParams
from frcnn_core.rpn import RPNLossParams, RPNParams

# More anchors per cell than this makes the RPN's 1 x 1 layers and a weights file unreasonable.
MAX_ANCHORS_PER_CELL = 100


class ParamsError(ValueError):
    """An impossible setting or combination, in one line for the user.

    Attributes:
        path: the setting that caused it (``"roi_pool.output_size"``), so the app can show the
            message next to that setting's widget; ``""`` when no one setting is to blame.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class PipelineParams:
    """Every setting, one frozen dataclass per group (hashable: caches key on them).

    The group names are the names the stages read them by; a field is addressed as
    ``"group.field"`` (``"proposals.nms_iou"``).
    """

    resize: ResizeParams = field(default_factory=ResizeParams)
    backbone: BackboneParams = field(default_factory=BackboneParams)
    anchors: AnchorParams = field(default_factory=AnchorParams)
    anchor_targets: AnchorTargetParams = field(default_factory=AnchorTargetParams)
    rpn: RPNParams = field(default_factory=RPNParams)
    rpn_loss: RPNLossParams = field(default_factory=RPNLossParams)
    proposals: ProposalParams = field(default_factory=ProposalParams)
    train_proposals: ProposalCounts = field(default_factory=ProposalCounts)
    test_proposals: ProposalCounts = TEST_COUNTS
    proposal_targets: ProposalTargetParams = field(default_factory=ProposalTargetParams)
    roi_pool: RoIPoolParams = field(default_factory=RoIPoolParams)
    head: HeadParams = field(default_factory=HeadParams)
    head_loss: HeadLossParams = field(default_factory=HeadLossParams)
    detect: DetectParams = field(default_factory=DetectParams)
    match: MatchParams = field(default_factory=MatchParams)
    # The production detector (torchvision's), read by frcnn_core.production_graph.PRODUCTION.
    production_input: ProductionInputParams = field(default_factory=ProductionInputParams)
    production: ProductionParams = field(default_factory=ProductionParams)

    def get(self, path: str) -> Any:
        """The value at ``"group.field"``."""
        group, name = split_path(path)
        return getattr(getattr(self, group), name)

    def replace(self, path: str, value: Any) -> PipelineParams:
        """A copy with ``"group.field"`` set to ``value`` (not validated: see :func:`validate`)."""
        group, name = split_path(path)
        sub = dataclasses.replace(getattr(self, group), **{name: value})
        return dataclasses.replace(self, **{group: sub})

    def with_seed(self, seed: int) -> PipelineParams:
        """The same settings with both sampling seeds set to ``seed``."""
        return self.replace("anchor_targets.seed", seed).replace("proposal_targets.seed", seed)

    def with_overrides(self, overrides: dict[str, str]) -> PipelineParams:
        """Settings by name and text, ``{"nms_iou": "0.6"}``: each name is looked up in the
        registry (:func:`resolve`), each text parsed and range-checked, then the whole is
        validated.

        Raises:
            ParamsError: an unknown, ambiguous or derived name, a bad value, or an impossible
                combination; one line.
        """
        params = self
        for name, text in overrides.items():
            entry = resolve(name)
            params = params.replace(entry.path, entry.parse(text))
        validate(params)
        return params

    def changed(self) -> dict[str, Any]:
        """``{path: value}`` of the settings that differ from the tutorial's."""
        default = PipelineParams()
        return {
            p.path: self.get(p.path) for p in PARAMETERS if self.get(p.path) != default.get(p.path)
        }


def groups() -> tuple[str, ...]:
    """The group names, in pipeline order."""
    return tuple(f.name for f in dataclasses.fields(PipelineParams))


def split_path(path: str) -> tuple[str, str]:
    group, sep, name = path.partition(".")
    if not sep or group not in groups():
        raise ParamsError(f"unknown setting {path!r}", path)
    return group, name


def field_paths() -> Iterator[str]:
    """Every ``"group.field"`` of :class:`PipelineParams`."""
    default = PipelineParams()
    for group in groups():
        for f in dataclasses.fields(getattr(default, group)):
            yield f"{group}.{f.name}"


# -- the registry ------------------------------------------------------------------------------

KINDS = ("float", "int", "bool", "choice", "numbers", "seed")


@dataclass(frozen=True)
class Parameter:
    """One user-facing setting.

    Attributes:
        path: ``"group.field"`` in :class:`PipelineParams`.
        label: what a slider or toggle says.
        help: one or two sentences for a learner, ending with the tutorial's value.
        kind: ``float`` / ``int`` (a slider over [low, high] in steps of ``step``), ``bool`` (a
            toggle), ``choice`` (one of ``options``), ``numbers`` (a set of numbers, each in
            [low, high], at most ``most`` of them), ``seed`` (a non-negative integer that a
            "resample" button moves on).
        options: the choices of a ``choice``, ``choice_labels`` what they are called.
        suggestions: values offered first for ``numbers`` (others may be typed).
        fmt: printf-style format of the slider's value.
    """

    path: str
    label: str
    help: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    options: tuple[Any, ...] = ()
    choice_labels: tuple[str, ...] = ()
    suggestions: tuple[float, ...] = ()
    most: int = 6
    fmt: str | None = None

    @property
    def group(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.path.split(".", 1)[1]

    @property
    def default(self) -> Any:
        """The tutorial's value: the dataclass default."""
        return PipelineParams().get(self.path)

    def parse(self, text: str) -> Any:
        """A value from text (the command line, a shared link), checked.

        Raises:
            ParamsError: not a value of this kind, or out of range.
        """
        text = str(text).strip()
        try:
            if self.kind == "bool":
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(text)
                value: Any = lowered in ("true", "1", "yes", "on")
            elif self.kind == "numbers":
                value = tuple(float(v) for v in text.split(",") if v.strip())
            elif self.kind in ("int", "seed"):
                value = int(text)
            elif self.kind == "float":
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ParamsError(
                f"{self.path}={text!r} is not {_KIND_WORDS[self.kind]}", self.path
            ) from None
        return self.check(value)

    def check(self, value: Any) -> Any:
        """``value`` if it is valid for this setting, normalised (``numbers`` sorted and
        de-duplicated); raises :class:`ParamsError` otherwise."""
        where = self.path
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamsError(f"{where} must be true or false", where)
            return value
        if self.kind == "choice":
            if value not in self.options:
                options = ", ".join(map(str, self.options))
                raise ParamsError(f"{where} must be one of {options}, not {value!r}", where)
            return value
        if self.kind == "numbers":
            try:
                values = tuple(sorted({float(v) for v in value}))
            except (TypeError, ValueError):
                raise ParamsError(f"{where} must be a list of numbers", where) from None
            if not values:
                raise ParamsError(f"{where} needs at least one value", where)
            if len(values) > self.most:
                raise ParamsError(f"{where} takes at most {self.most} values", where)
            for v in values:
                self._in_range(v)
            return values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where} must be {_KIND_WORDS[self.kind]}", where)
        if self.kind in ("int", "seed"):
            if value != int(value):
                raise ParamsError(f"{where} must be a whole number, not {value!r}", where)
            value = int(value)
        else:
            value = float(value)
        self._in_range(value)
        return value

    def _in_range(self, value: float) -> None:
        if not math.isfinite(value):
            raise ParamsError(f"{self.path} must be a finite number", self.path)
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if not low <= value <= high:
            if self.high is None:
                where = f"at least {low:g}"
            else:
                where = f"between {low:g} and {high:g}"
            raise ParamsError(f"{self.path} must be {where} (got {value:g})", self.path)


_KIND_WORDS = {
    "float": "a number",
    "int": "a whole number",
    "seed": "a whole number",
    "bool": "true or false",
    "choice": "one of the choices",
    "numbers": "a comma-separated list of numbers",
}


def _bug(path: str, label: str, help: str) -> Parameter:
    return Parameter(path, label, help, "bool")


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "resize.width",
        "Input width",
        "Width of the input frame the image is resized to, in pixels (tutorial: 800).",
        "int",
        160,
        1280,
        32,
    ),
    Parameter(
        "resize.height",
        "Input height",
        "Height of the input frame the image is resized to, in pixels (tutorial: 800).",
        "int",
        160,
        1280,
        32,
    ),
    Parameter(
        "resize.truncate_boxes",
        "Truncate boxes to whole pixels",
        "The tutorial truncates the scaled boxes to whole pixels (int); off keeps them as "
        "fractions.",
        "bool",
    ),
    Parameter(
        "backbone.normalize",
        "ImageNet normalisation",
        "Subtract ImageNet's mean and divide by its standard deviation per colour channel, as "
        "VGG16 was trained. The tutorial forgot it (bug B13).",
        "bool",
    ),
    Parameter(
        "anchors.scales",
        "Scales",
        "Anchor size in feature cells: side = stride × scale pixels at ratio 1 (tutorial: 8, "
        "16, 32). Type a number to add one.",
        "numbers",
        0.5,
        64.0,
        suggestions=(2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    ),
    Parameter(
        "anchors.ratios",
        "Ratios (height / width)",
        "0.5 is a wide box, 2 a tall one; the area stays that of the scale (tutorial: 0.5, 1, "
        "2). Type a number to add one.",
        "numbers",
        0.1,
        10.0,
        suggestions=(0.25, 0.5, 1.0, 2.0, 4.0),
    ),
    _bug(
        "anchors.bug_b1_x_outer",
        "B1: anchors in x-outer order",
        "The tutorial built the anchors column by column while the RPN's outputs are row by "
        "row: every anchor is paired with the prediction of the mirrored cell.",
    ),
    Parameter(
        "anchor_targets.pos_iou",
        "Positive IoU ≥",
        "An anchor whose best IoU with a ground-truth box reaches this is an object "
        "(tutorial: 0.7).",
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "anchor_targets.neg_iou",
        "Negative IoU <",
        "An anchor whose best IoU is under this is background (tutorial: 0.3).",
        "float",
        0.0,
        0.95,
        0.05,
    ),
    Parameter(
        "anchor_targets.batch_size",
        "Anchors per image",
        "How many labelled anchors enter the RPN's loss (tutorial: 256).",
        "int",
        16,
        1024,
        16,
    ),
    Parameter(
        "anchor_targets.pos_fraction",
        "Positive fraction at most",
        "Share of the sampled anchors that may be positive (tutorial: 0.5).",
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "anchor_targets.seed",
        "Anchor sampling seed",
        "Which random sample of anchors enters the loss; Resample draws another.",
        "seed",
        0,
    ),
    _bug(
        "anchor_targets.bug_b2_negatives_last",
        "B2: negatives labelled last",
        "The tutorial labels the best anchors positive before the negatives, so a small box "
        "whose best IoU is under the negative threshold loses its positives.",
    ),
    _bug(
        "anchor_targets.bug_b3_neg_count",
        "B3: n_neg = 256 × #pos",
        "The tutorial multiplies where it should subtract: every negative enters the loss.",
    ),
    _bug(
        "anchor_targets.bug_b4_float_npos",
        "B4: n_pos = 0.5 × 256 as a float",
        "A float count makes np.random.choice fail once there are more than 128 positives.",
    ),
    _bug(
        "anchor_targets.bug_b5_width_assign",
        "B5: width = x2 = x1",
        "An assignment where a subtraction was meant gives wrong box targets.",
    ),
    _bug(
        "rpn.bug_b6_no_relu",
        "B6: no ReLU after the RPN's 3 × 3 conv",
        "Without it the conv and the 1 × 1 layers collapse into one linear map.",
    ),
    Parameter(
        "rpn_loss.loss_lambda",
        "RPN box-loss weight λ",
        "Weight of the RPN's box-regression term against its objectness term (tutorial: 10).",
        "float",
        0.0,
        20.0,
        0.5,
    ),
    Parameter(
        "rpn_loss.smooth_l1_beta",
        "RPN smooth-L1 β",
        "Where the RPN's box loss turns from quadratic to linear (tutorial: 1).",
        "float",
        0.0,
        5.0,
        0.05,
    ),
    Parameter(
        "proposals.nms_iou",
        "NMS IoU threshold",
        "NMS deletes a box that overlaps a better-scored one by more than this (tutorial: 0.7).",
        "float",
        0.0,
        1.0,
        0.05,
    ),
    Parameter(
        "proposals.min_size",
        "Min size (px)",
        "Proposals narrower or shorter than this many input pixels are dropped (tutorial: 16).",
        "float",
        0.0,
        800.0,
        8.0,
    ),
    Parameter(
        "proposals.scale_clamp",
        "Largest log size change",
        "Predicted log width and height changes are clamped to this, so a box grows at most "
        "e^this times (tutorial: log(1000 / 16) ≈ 4.135).",
        "float",
        0.5,
        10.0,
        0.5,
    ),
    _bug(
        "proposals.bug_b7_logit_rank",
        "B7: rank by the raw object logit",
        "The tutorial ranked proposals by the object logit, not the softmax probability.",
    ),
    _bug(
        "proposals.bug_b8_index_order",
        "B8: NMS in anchor-index order",
        "The tutorial's order.argsort()[::-1] visits boxes by index, not by score.",
    ),
    Parameter(
        "train_proposals.pre_nms",
        "Pre-NMS top N (training)",
        "Best-scored boxes that go into NMS while training (tutorial: 12000).",
        "int",
        100,
        30000,
        100,
    ),
    Parameter(
        "train_proposals.post_nms",
        "Post-NMS top N (training)",
        "Best NMS survivors kept as proposals while training (tutorial: 2000).",
        "int",
        10,
        5000,
        10,
    ),
    Parameter(
        "test_proposals.pre_nms",
        "Pre-NMS top N (test)",
        "Best-scored boxes that go into NMS at test time (tutorial: 6000).",
        "int",
        100,
        30000,
        100,
    ),
    Parameter(
        "test_proposals.post_nms",
        "Post-NMS top N (test)",
        "Best NMS survivors kept as proposals at test time (tutorial: 300).",
        "int",
        10,
        5000,
        10,
    ),
    Parameter(
        "proposal_targets.roi_batch_size",
        "RoIs per image",
        "How many RoIs enter the head's loss (tutorial: 128).",
        "int",
        8,
        512,
        8,
    ),
    Parameter(
        "proposal_targets.roi_pos_fraction",
        "Positive RoI fraction at most",
        "Share of the sampled RoIs that may be objects (tutorial: 0.25).",
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "proposal_targets.roi_pos_iou",
        "Positive RoI IoU ≥",
        "A proposal whose best IoU with a ground-truth box reaches this is an object RoI "
        "(tutorial: 0.5).",
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "proposal_targets.roi_neg_iou_hi",
        "Background RoI IoU <",
        "Upper end of the background range (tutorial: 0.5).",
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "proposal_targets.roi_neg_iou_lo",
        "Background RoI IoU ≥",
        "Lower end of the background range (tutorial: 0.0; Fast R-CNN used 0.1).",
        "float",
        0.0,
        0.95,
        0.05,
    ),
    Parameter(
        "proposal_targets.seed",
        "RoI sampling seed",
        "Which random sample of RoIs enters the loss; Resample draws another.",
        "seed",
        0,
    ),
    Parameter(
        "roi_pool.output_size",
        "Pooled size",
        "Every RoI is pooled to this many × this many cells; the head's input width follows "
        "(tutorial: 7).",
        "int",
        1,
        10,
        1,
    ),
    Parameter(
        "roi_pool.method",
        "Pooling used by the pipeline",
        "RoI Pool rounds the RoI to whole cells and takes each bin's maximum (the paper); RoI "
        "Align samples the exact box bilinearly (tutorial: RoI Pool).",
        "choice",
        options=POOL_METHODS,
        choice_labels=("RoI Pool", "RoI Align"),
    ),
    Parameter(
        "roi_pool.sampling_ratio",
        "RoI Align samples per bin side",
        "Bilinear samples per bin side for RoI Align; 0 adapts to the RoI's size (default: 2).",
        "int",
        0,
        8,
        1,
    ),
    _bug(
        "head.bug_b11_no_relu",
        "B11: no ReLU between fc6 and fc7",
        "The tutorial's nn.Sequential(Linear, Linear): two layers that collapse into one.",
    ),
    Parameter(
        "head_loss.loss_lambda",
        "Head box-loss weight λ",
        "Weight of the head's box-regression term against its classification term (tutorial: 10).",
        "float",
        0.0,
        20.0,
        0.5,
    ),
    Parameter(
        "head_loss.smooth_l1_beta",
        "Head smooth-L1 β",
        "Where the head's box loss turns from quadratic to linear (tutorial: 1).",
        "float",
        0.0,
        5.0,
        0.05,
    ),
    _bug(
        "head_loss.bug_b12_unreduced",
        "B12: leave the RoI box loss unreduced",
        "The tutorial never sums roi_loc_loss, so the total loss is a matrix.",
    ),
    Parameter(
        "detect.score_threshold",
        "Score threshold",
        "Detections whose class score is under this are dropped (tutorial: 0.05).",
        "float",
        0.0,
        0.99,
        0.01,
    ),
    Parameter(
        "detect.class_nms_iou",
        "Per-class NMS IoU",
        "A detection overlapping a better one of the same class by more than this is "
        "suppressed (tutorial: 0.5).",
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "detect.max_detections",
        "Max detections",
        "The best-scored detections kept per image (tutorial: 100).",
        "int",
        1,
        300,
        1,
    ),
    Parameter(
        "match.match_iou",
        "IoU for a true positive",
        "A detection is a true positive when it overlaps a ground-truth box of its class by "
        "at least this (PASCAL VOC: 0.5).",
        "float",
        0.1,
        0.95,
        0.05,
    ),
    Parameter(
        "production_input.shorter_side",
        "Shorter side (px)",
        "The production detector scales the image, aspect kept, so its shorter side is this "
        "many pixels unless the longer side would pass its limit. Smaller is faster on a CPU, "
        "larger finds smaller objects (torchvision and the tutorial's MMDetection config: 800).",
        "int",
        128,
        1344,
        32,
    ),
    Parameter(
        "production_input.longer_side",
        "Longer side at most (px)",
        "The production detector's resize never makes the longer side larger than this "
        "(torchvision and the tutorial's MMDetection config: 1333).",
        "int",
        133,
        2133,
        100,
    ),
    Parameter(
        "production.box_score_thresh",
        "Score threshold",
        "The production detector's detections whose class probability is not above this are "
        "hidden; moving it re-runs no network. Its lowest value is the model's own: torchvision "
        "drops every score under 0.05 (tutorial, MMDetection demo: 0.3).",
        "float",
        0.05,
        0.99,
        0.01,
    ),
)

BY_PATH: dict[str, Parameter] = {p.path: p for p in PARAMETERS}

# Names a user may try that are sizes of the network, not settings, and what they follow from.
DERIVED: dict[str, str] = {
    "stride": "the backbone's stride ({spec.name}: {spec.stride}); anchors are spaced by it",
    "spatial_scale": "1 / the backbone's stride (1/{spec.stride})",
    "feature_size": "the input frame and the backbone's stride (800 / {spec.stride} = 50)",
    "channels": "the backbone ({spec.name}: {spec.channels} channels)",
    "in_features": "channels × pooled size² ({spec.channels} × 7 × 7 = 25088 by default)",
    "per_cell": "the number of scales × the number of ratios",
    "anchors_per_cell": "the number of scales × the number of ratios",
}


def parameter(path: str) -> Parameter:
    try:
        return BY_PATH[path]
    except KeyError:
        raise ParamsError(f"unknown setting {path!r}", path) from None


def resolve(name: str, spec: BackboneSpec = VGG16) -> Parameter:
    """The setting a user means by ``name``: ``"group.field"`` or a field name that only one
    group has.

    Raises:
        ParamsError: unknown, ambiguous (lists the full names), or a derived size (says what
            it follows from).
    """
    name = name.strip()
    field_name = name.rpartition(".")[2]
    if field_name in DERIVED and name not in BY_PATH:
        why = DERIVED[field_name].format(spec=spec)
        raise ParamsError(f"{field_name} is derived, not a setting: it follows from {why}", name)
    if name in BY_PATH:
        return BY_PATH[name]
    owners = [p for p in PARAMETERS if p.name == name]
    if len(owners) == 1:
        return owners[0]
    if owners:
        options = ", ".join(p.path for p in owners)
        raise ParamsError(f"{name!r} is ambiguous: use one of {options}", name)
    raise ParamsError(f"unknown setting {name!r} (see --help for the list)", name)


def validate(params: PipelineParams, spec: BackboneSpec = VGG16) -> PipelineParams:
    """``params`` when the pipeline can run them, else :class:`ParamsError` naming the setting.

    Each value must be valid for its registry entry; on top of that, combinations the network
    cannot run are refused.
    """
    for entry in PARAMETERS:
        entry.check(params.get(entry.path))
    for path in ("resize.height", "resize.width"):
        if params.get(path) < spec.stride * 2:
            raise ParamsError(
                f"{path} must be at least {spec.stride * 2} pixels: the backbone's feature map "
                f"has one cell per {spec.stride}",
                path,
            )
    per_cell = params.anchors.per_cell
    if per_cell > MAX_ANCHORS_PER_CELL:
        raise ParamsError(
            f"{len(params.anchors.scales)} scales × {len(params.anchors.ratios)} ratios = "
            f"{per_cell} anchors per cell; at most {MAX_ANCHORS_PER_CELL}",
            "anchors.ratios",
        )
    return params


def describe() -> str:
    """The settings for ``--help``: each name, its range and its tutorial default."""
    lines = []
    for p in PARAMETERS:
        if p.kind == "bool":
            rule = "true|false"
        elif p.kind == "choice":
            rule = "|".join(map(str, p.options))
        elif p.kind == "numbers":
            rule = f"comma-separated, each {p.low:g}..{p.high:g}"
        elif p.high is None:
            rule = f">= {p.low:g}"
        else:
            rule = f"{p.low:g}..{p.high:g}"
        default = p.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" for v in default)
        lines.append(f"  {p.path:<36} {rule:<32} default {default}")
    return "\n".join(lines)
