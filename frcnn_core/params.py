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
from frcnn_core.i18n import N_, _, ngettext
from frcnn_core.image import ResizeParams
from frcnn_core.production_params import ProductionInputParams, ProductionParams
from frcnn_core.proposal_targets import ProposalTargetParams
from frcnn_core.proposals import TEST_COUNTS, ProposalCounts, ProposalParams
from frcnn_core.roi_pool import POOL_METHODS, RoIPoolParams
from frcnn_core.rpn import RPNLossParams, RPNParams

# More anchors per cell than this makes the RPN's 1 x 1 layers and a weights file unreasonable.
MAX_ANCHORS_PER_CELL = 100


class ParamsError(ValueError):
    """An impossible setting or combination, in one line for the user, in the caller's
    language (:mod:`frcnn_core.i18n`; the command line's is English).

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
        raise ParamsError(_("unknown setting {path!r}").format(path=path), path)
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
        label: what a slider or toggle says, in English (marked for the catalogue: shown as
            ``_(p.label)`` in the viewer's language).
        help: one or two sentences for a learner, ending with the tutorial's value (English,
            shown as ``_(p.help)``).
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

    def on_step(self, value: float) -> float:
        """A float slider's value on its grid (``low + k * step``), without the binary noise a
        browser's arithmetic may add (0.35000000000000003 is 0.35): the same setting then
        gives the same cache keys, whoever moved the slider."""
        if self.kind != "float" or not self.step or self.low is None or not math.isfinite(value):
            return value
        k = round((value - self.low) / self.step)
        return round(self.low + k * self.step, 10)

    def steps(self) -> list[float]:
        """Every value a float or int slider offers, from ``low`` to ``high``."""
        if self.kind not in ("float", "int") or not self.step:
            return []
        n = round((self.high - self.low) / self.step)
        values = [self.on_step(self.low + k * self.step) for k in range(n + 1)]
        return [int(v) for v in values] if self.kind == "int" else values

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
            message = _(_NOT_OF_KIND[self.kind]).format(path=self.path, text=text)
            raise ParamsError(message, self.path) from None
        return self.check(value)

    def check(self, value: Any) -> Any:
        """``value`` if it is valid for this setting, normalised (``numbers`` sorted and
        de-duplicated); raises :class:`ParamsError` otherwise."""
        where = self.path
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamsError(_("{path} must be true or false").format(path=where), where)
            return value
        if self.kind == "choice":
            if value not in self.options:
                options = ", ".join(map(str, self.options))
                message = _("{path} must be one of {options}, not {value!r}")
                raise ParamsError(message.format(path=where, options=options, value=value), where)
            return value
        if self.kind == "numbers":
            try:
                values = tuple(sorted({float(v) for v in value}))
            except (TypeError, ValueError):
                message = _("{path} must be a list of numbers").format(path=where)
                raise ParamsError(message, where) from None
            if not values:
                raise ParamsError(_("{path} needs at least one value").format(path=where), where)
            if len(values) > self.most:
                message = ngettext(
                    "{path} takes at most {n} value", "{path} takes at most {n} values", self.most
                )
                raise ParamsError(message.format(path=where, n=self.most), where)
            for v in values:
                self._in_range(v)
            return values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(_(_MUST_BE_KIND[self.kind]).format(path=where), where)
        if self.kind in ("int", "seed"):
            if value != int(value):
                message = _("{path} must be a whole number, not {value!r}")
                raise ParamsError(message.format(path=where, value=value), where)
            value = int(value)
        else:
            value = float(value)
        self._in_range(value)
        return value

    def _in_range(self, value: float) -> None:
        if not math.isfinite(value):
            message = _("{path} must be a finite number").format(path=self.path)
            raise ParamsError(message, self.path)
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if not low <= value <= high:
            if self.high is None:
                message = _("{path} must be at least {low:g} (got {value:g})")
            else:
                message = _("{path} must be between {low:g} and {high:g} (got {value:g})")
            message = message.format(path=self.path, low=low, high=high, value=value)
            raise ParamsError(message, self.path)


# Whole sentences per kind (word order differs between languages); translated where raised.
_NOT_OF_KIND = {
    "float": N_("{path}={text!r} is not a number"),
    "int": N_("{path}={text!r} is not a whole number"),
    "seed": N_("{path}={text!r} is not a whole number"),
    "bool": N_("{path}={text!r} is not true or false"),
    "choice": N_("{path}={text!r} is not one of the choices"),
    "numbers": N_("{path}={text!r} is not a comma-separated list of numbers"),
}
_MUST_BE_KIND = {
    "float": N_("{path} must be a number"),
    "int": N_("{path} must be a whole number"),
    "seed": N_("{path} must be a whole number"),
    "bool": N_("{path} must be true or false"),
    "choice": N_("{path} must be one of the choices"),
    "numbers": N_("{path} must be a comma-separated list of numbers"),
}


def _bug(path: str, label: str, help: str) -> Parameter:
    return Parameter(path, label, help, "bool")


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "resize.width",
        N_("Input width"),
        N_("Width of the input frame the image is resized to, in pixels (tutorial: 800)."),
        "int",
        160,
        1280,
        32,
    ),
    Parameter(
        "resize.height",
        N_("Input height"),
        N_("Height of the input frame the image is resized to, in pixels (tutorial: 800)."),
        "int",
        160,
        1280,
        32,
    ),
    Parameter(
        "resize.truncate_boxes",
        N_("Truncate boxes to whole pixels"),
        N_(
            "The tutorial truncates the scaled boxes to whole pixels (int); off keeps them as "
            "fractions."
        ),
        "bool",
    ),
    Parameter(
        "backbone.normalize",
        N_("ImageNet normalisation"),
        N_(
            "Subtract ImageNet's mean and divide by its standard deviation per colour channel, as "
            "VGG16 was trained. The tutorial forgot it (bug B13)."
        ),
        "bool",
    ),
    Parameter(
        "anchors.scales",
        N_("Scales"),
        N_(
            "Anchor size in feature cells: side = stride × scale pixels at ratio 1 (tutorial: 8, "
            "16, 32). Type a number to add one."
        ),
        "numbers",
        0.5,
        64.0,
        suggestions=(2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    ),
    Parameter(
        "anchors.ratios",
        N_("Ratios (height / width)"),
        N_(
            "0.5 is a wide box, 2 a tall one; the area stays that of the scale (tutorial: 0.5, 1, "
            "2). Type a number to add one."
        ),
        "numbers",
        0.1,
        10.0,
        suggestions=(0.25, 0.5, 1.0, 2.0, 4.0),
    ),
    _bug(
        "anchors.bug_b1_x_outer",
        N_("B1: anchors in x-outer order"),
        N_(
            "The tutorial built the anchors column by column while the RPN's outputs are row by "
            "row: every anchor is paired with the prediction of the mirrored cell."
        ),
    ),
    Parameter(
        "anchor_targets.pos_iou",
        N_("Positive IoU ≥"),
        N_(
            "An anchor whose best IoU with a ground-truth box reaches this is an object "
            "(tutorial: 0.7)."
        ),
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "anchor_targets.neg_iou",
        N_("Negative IoU <"),
        N_("An anchor whose best IoU is under this is background (tutorial: 0.3)."),
        "float",
        0.0,
        0.95,
        0.05,
    ),
    Parameter(
        "anchor_targets.batch_size",
        N_("Anchors per image"),
        N_("How many labelled anchors enter the RPN's loss (tutorial: 256)."),
        "int",
        16,
        1024,
        16,
    ),
    Parameter(
        "anchor_targets.pos_fraction",
        N_("Positive fraction at most"),
        N_("Share of the sampled anchors that may be positive (tutorial: 0.5)."),
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "anchor_targets.seed",
        N_("Anchor sampling seed"),
        N_("Which random sample of anchors enters the loss; Resample draws another."),
        "seed",
        0,
    ),
    _bug(
        "anchor_targets.bug_b2_negatives_last",
        N_("B2: negatives labelled last"),
        N_(
            "The tutorial labels the best anchors positive before the negatives, so a small box "
            "whose best IoU is under the negative threshold loses its positives."
        ),
    ),
    _bug(
        "anchor_targets.bug_b3_neg_count",
        N_("B3: n_neg = 256 × #pos"),
        N_("The tutorial multiplies where it should subtract: every negative enters the loss."),
    ),
    _bug(
        "anchor_targets.bug_b4_float_npos",
        N_("B4: n_pos = 0.5 × 256 as a float"),
        N_("A float count makes np.random.choice fail once there are more than 128 positives."),
    ),
    _bug(
        "anchor_targets.bug_b5_width_assign",
        N_("B5: width = x2 = x1"),
        N_("An assignment where a subtraction was meant gives wrong box targets."),
    ),
    _bug(
        "rpn.bug_b6_no_relu",
        N_("B6: no ReLU after the RPN's 3 × 3 conv"),
        N_("Without it the conv and the 1 × 1 layers collapse into one linear map."),
    ),
    Parameter(
        "rpn_loss.loss_lambda",
        N_("RPN box-loss weight λ"),
        N_("Weight of the RPN's box-regression term against its objectness term (tutorial: 10)."),
        "float",
        0.0,
        20.0,
        0.5,
    ),
    Parameter(
        "rpn_loss.smooth_l1_beta",
        N_("RPN smooth-L1 β"),
        N_("Where the RPN's box loss turns from quadratic to linear (tutorial: 1)."),
        "float",
        0.0,
        5.0,
        0.05,
    ),
    Parameter(
        "proposals.nms_iou",
        N_("NMS IoU threshold"),
        N_(
            "NMS deletes a box that overlaps a better-scored one by more than this (tutorial: 0.7)."
        ),
        "float",
        0.0,
        1.0,
        0.05,
    ),
    Parameter(
        "proposals.min_size",
        N_("Min size (px)"),
        N_("Proposals narrower or shorter than this many input pixels are dropped (tutorial: 16)."),
        "float",
        0.0,
        800.0,
        8.0,
    ),
    Parameter(
        "proposals.scale_clamp",
        N_("Largest log size change"),
        N_(
            "Predicted log width and height changes are clamped to this, so a box grows at most "
            "e^this times (tutorial: log(1000 / 16) ≈ 4.135)."
        ),
        "float",
        0.5,
        10.0,
        0.5,
    ),
    _bug(
        "proposals.bug_b7_logit_rank",
        N_("B7: rank by the raw object logit"),
        N_("The tutorial ranked proposals by the object logit, not the softmax probability."),
    ),
    _bug(
        "proposals.bug_b8_index_order",
        N_("B8: NMS in anchor-index order"),
        N_("The tutorial's order.argsort()[::-1] visits boxes by index, not by score."),
    ),
    Parameter(
        "train_proposals.pre_nms",
        N_("Pre-NMS top N (training)"),
        N_("Best-scored boxes that go into NMS while training (tutorial: 12000)."),
        "int",
        100,
        30000,
        100,
    ),
    Parameter(
        "train_proposals.post_nms",
        N_("Post-NMS top N (training)"),
        N_("Best NMS survivors kept as proposals while training (tutorial: 2000)."),
        "int",
        10,
        5000,
        10,
    ),
    Parameter(
        "test_proposals.pre_nms",
        N_("Pre-NMS top N (test)"),
        N_("Best-scored boxes that go into NMS at test time (tutorial: 6000)."),
        "int",
        100,
        30000,
        100,
    ),
    Parameter(
        "test_proposals.post_nms",
        N_("Post-NMS top N (test)"),
        N_("Best NMS survivors kept as proposals at test time (tutorial: 300)."),
        "int",
        10,
        5000,
        10,
    ),
    Parameter(
        "proposal_targets.roi_batch_size",
        N_("RoIs per image"),
        N_("How many RoIs enter the head's loss (tutorial: 128)."),
        "int",
        8,
        512,
        8,
    ),
    Parameter(
        "proposal_targets.roi_pos_fraction",
        N_("Positive RoI fraction at most"),
        N_("Share of the sampled RoIs that may be objects (tutorial: 0.25)."),
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "proposal_targets.roi_pos_iou",
        N_("Positive RoI IoU ≥"),
        N_(
            "A proposal whose best IoU with a ground-truth box reaches this is an object RoI "
            "(tutorial: 0.5)."
        ),
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "proposal_targets.roi_neg_iou_hi",
        N_("Background RoI IoU <"),
        N_("Upper end of the background range (tutorial: 0.5)."),
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "proposal_targets.roi_neg_iou_lo",
        N_("Background RoI IoU ≥"),
        N_("Lower end of the background range (tutorial: 0.0; Fast R-CNN used 0.1)."),
        "float",
        0.0,
        0.95,
        0.05,
    ),
    Parameter(
        "proposal_targets.seed",
        N_("RoI sampling seed"),
        N_("Which random sample of RoIs enters the loss; Resample draws another."),
        "seed",
        0,
    ),
    Parameter(
        "roi_pool.output_size",
        N_("Pooled size"),
        N_(
            "Every RoI is pooled to this many × this many cells; the head's input width follows "
            "(tutorial: 7)."
        ),
        "int",
        1,
        10,
        1,
    ),
    Parameter(
        "roi_pool.method",
        N_("Pooling used by the pipeline"),
        N_(
            "RoI Pool rounds the RoI to whole cells and takes each bin's maximum (the paper); RoI "
            "Align samples the exact box bilinearly (tutorial: RoI Pool)."
        ),
        "choice",
        options=POOL_METHODS,
        choice_labels=("RoI Pool", "RoI Align"),
    ),
    Parameter(
        "roi_pool.sampling_ratio",
        N_("RoI Align samples per bin side"),
        N_("Bilinear samples per bin side for RoI Align; 0 adapts to the RoI's size (default: 2)."),
        "int",
        0,
        8,
        1,
    ),
    _bug(
        "head.bug_b11_no_relu",
        N_("B11: no ReLU between fc6 and fc7"),
        N_("The tutorial's nn.Sequential(Linear, Linear): two layers that collapse into one."),
    ),
    Parameter(
        "head_loss.loss_lambda",
        N_("Head box-loss weight λ"),
        N_(
            "Weight of the head's box-regression term against its classification term "
            "(tutorial: 10)."
        ),
        "float",
        0.0,
        20.0,
        0.5,
    ),
    Parameter(
        "head_loss.smooth_l1_beta",
        N_("Head smooth-L1 β"),
        N_("Where the head's box loss turns from quadratic to linear (tutorial: 1)."),
        "float",
        0.0,
        5.0,
        0.05,
    ),
    _bug(
        "head_loss.bug_b12_unreduced",
        N_("B12: leave the RoI box loss unreduced"),
        N_("The tutorial never sums roi_loc_loss, so the total loss is a matrix."),
    ),
    Parameter(
        "detect.score_threshold",
        N_("Score threshold"),
        N_("Detections whose class score is under this are dropped (tutorial: 0.05)."),
        "float",
        0.0,
        0.99,
        0.01,
    ),
    Parameter(
        "detect.class_nms_iou",
        N_("Per-class NMS IoU"),
        N_(
            "A detection overlapping a better one of the same class by more than this is "
            "suppressed (tutorial: 0.5)."
        ),
        "float",
        0.05,
        1.0,
        0.05,
    ),
    Parameter(
        "detect.max_detections",
        N_("Max detections"),
        N_("The best-scored detections kept per image (tutorial: 100)."),
        "int",
        1,
        300,
        1,
    ),
    Parameter(
        "match.match_iou",
        N_("IoU for a true positive"),
        N_(
            "A detection is a true positive when it overlaps a ground-truth box of its class by "
            "at least this (PASCAL VOC: 0.5)."
        ),
        "float",
        0.1,
        0.95,
        0.05,
    ),
    Parameter(
        "production_input.shorter_side",
        N_("Shorter side (px)"),
        N_(
            "The production detector scales the image, aspect kept, so its shorter side is this "
            "many pixels unless the longer side would pass its limit. Smaller is faster on a CPU, "
            "larger finds smaller objects (torchvision and the tutorial's MMDetection config: 800)."
        ),
        "int",
        128,
        1344,
        32,
    ),
    Parameter(
        "production_input.longer_side",
        N_("Longer side at most (px)"),
        N_(
            "The production detector's resize never makes the longer side larger than this "
            "(torchvision and the tutorial's MMDetection config: 1333)."
        ),
        "int",
        133,
        2133,
        100,
    ),
    Parameter(
        "production.box_score_thresh",
        N_("Score threshold"),
        N_(
            "The production detector's detections whose class probability is not above this "
            "are hidden; moving it re-runs no network. Its lowest value is the model's own: "
            "torchvision drops every score under 0.05 (tutorial, MMDetection demo: 0.3)."
        ),
        "float",
        0.05,
        0.99,
        0.01,
    ),
)

BY_PATH: dict[str, Parameter] = {p.path: p for p in PARAMETERS}

# Names a user may try that are sizes of the network, not settings, and what they follow from:
# the whole message (``{name}`` is the name tried; ``{backbone}``, ``{stride}``, ``{channels}``
# the backbone's), translated where raised.
_PER_CELL = N_(
    "{name} is derived, not a setting: it follows from the number of scales × the number of ratios"
)
DERIVED: dict[str, str] = {
    "stride": N_(
        "{name} is derived, not a setting: it follows from the backbone's stride ({backbone}: "
        "{stride}); anchors are spaced by it"
    ),
    "spatial_scale": N_(
        "{name} is derived, not a setting: it follows from 1 / the backbone's stride (1/{stride})"
    ),
    "feature_size": N_(
        "{name} is derived, not a setting: it follows from the input frame and the backbone's "
        "stride (800 / {stride} = 50)"
    ),
    "channels": N_(
        "{name} is derived, not a setting: it follows from the backbone ({backbone}: "
        "{channels} channels)"
    ),
    "in_features": N_(
        "{name} is derived, not a setting: it follows from channels × pooled size² "
        "({channels} × 7 × 7 = 25088 by default)"
    ),
    "per_cell": _PER_CELL,
    "anchors_per_cell": _PER_CELL,
}


def parameter(path: str) -> Parameter:
    try:
        return BY_PATH[path]
    except KeyError:
        raise ParamsError(_("unknown setting {path!r}").format(path=path), path) from None


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
        message = _(DERIVED[field_name]).format(
            name=field_name, backbone=spec.name, stride=spec.stride, channels=spec.channels
        )
        raise ParamsError(message, name)
    if name in BY_PATH:
        return BY_PATH[name]
    owners = [p for p in PARAMETERS if p.name == name]
    if len(owners) == 1:
        return owners[0]
    if owners:
        options = ", ".join(p.path for p in owners)
        message = _("{name!r} is ambiguous: use one of {options}")
        raise ParamsError(message.format(name=name, options=options), name)
    message = _("unknown setting {name!r} (see --help for the list)").format(name=name)
    raise ParamsError(message, name)


def validate(params: PipelineParams, spec: BackboneSpec = VGG16) -> PipelineParams:
    """``params`` when the pipeline can run them, else :class:`ParamsError` naming the setting.

    Each value must be valid for its registry entry; on top of that, combinations the network
    cannot run are refused.
    """
    for entry in PARAMETERS:
        entry.check(params.get(entry.path))
    for path in ("resize.height", "resize.width"):
        if params.get(path) < spec.stride * 2:
            message = _(
                "{path} must be at least {least} pixels: the backbone's feature map has one "
                "cell per {stride}"
            )
            raise ParamsError(
                message.format(path=path, least=spec.stride * 2, stride=spec.stride), path
            )
    per_cell = params.anchors.per_cell
    if per_cell > MAX_ANCHORS_PER_CELL:
        message = _(
            "{scales} scales × {ratios} ratios = {n} anchors per cell; at most {most}"
        ).format(
            scales=len(params.anchors.scales),
            ratios=len(params.anchors.ratios),
            n=per_cell,
            most=MAX_ANCHORS_PER_CELL,
        )
        raise ParamsError(message, "anchors.ratios")
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
