"""Page 9: the tutorial's bugs (SPEC section 4). The catalogue of the thirteen bugs (the original
code quoted from the transcript, the fix, why it is wrong), the effect of each buggy variant on the
current image computed with ``frcnn_core``, and the figures. No streamlit here: the page places
what these functions return.

Every effect function takes the results of the correct and the buggy variant (both built by
:func:`with_bug` from the session's parameters, which stay untouched) and returns numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from torch import nn

from explorer.figures import (
    ACCENT_COLOUR,
    IGNORED_COLOUR,
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    PROPOSAL_COLOUR,
    add_boxes,
    add_gt,
    heatmap,
    image_figure,
)
from frcnn_core.anchor_targets import (
    AnchorTargetParams,
    AnchorTargetResult,
    TutorialBugError,
    anchor_targets,
)
from frcnn_core.anchors import AnchorParams, AnchorResult, generate_anchors
from frcnn_core.backbone import BackboneParams, image_to_tensor
from frcnn_core.boxes import smooth_l1_sum
from frcnn_core.head import (
    FastRCNNHead,
    HeadLoss,
    HeadOutput,
    HeadParams,
    UnreducedLossError,
    head_forward,
)
from frcnn_core.head import head_loss as compute_head_loss
from frcnn_core.pipeline import PipelineParams
from frcnn_core.proposals import ProposalResult
from frcnn_core.rpn import RPNHead, RPNOutput, RPNParams, rpn_forward, rpn_loss

TRANSCRIPT = "shared/reference/faster_rcnn_tutorial.txt"


@dataclass(frozen=True)
class Bug:
    """One tutorial bug.

    Attributes:
        id: "B1" .. "B13" (SPEC section 4).
        where, bug, effect: SPEC section 4's columns.
        original: the tutorial's code, quoted from the transcript.
        source: where the quote comes from.
        fix: the corrected code.
        why: why the original is wrong, in plain language (markdown).
        runnable: how this page runs the buggy variant ("" when it cannot).
    """

    id: str
    where: str
    bug: str
    effect: str
    original: str
    source: str
    fix: str
    why: str
    runnable: str


BUGS: tuple[Bug, ...] = (
    Bug(
        "B1",
        "anchors vs RPN output",
        "anchors built x-outer, RPN output flattened y-outer",
        "every anchor is paired with the prediction of the mirrored cell",
        """for i in range(len(ctr_x)):
    for j in range(len(ctr_y)):
        ctr[index, 1] = ctr_x[i] - 8
        ctr[index, 0] = ctr_y[j] - 8
        index += 1
...
pred_anchor_locs = pred_anchor_locs.permute(0, 2, 3, 1).contiguous().view(1, -1, 4)""",
        "transcript lines 386-390 (anchor centres) and 935 (RPN output)",
        """for j in range(len(ctr_y)):      # y outer: row by row,
    for i in range(len(ctr_x)):  # like permute(0, 2, 3, 1)
        ctr[index, 1] = ctr_x[i] - 8
        ctr[index, 0] = ctr_y[j] - 8
        index += 1""",
        "The RPN makes one prediction per feature-map cell, and "
        "`permute(0, 2, 3, 1).view(1, -1, 4)` lists them **row by row** (y outer, x inner). The "
        "tutorial's loops list the anchor centres **column by column** (x in the outer loop). "
        "Both lists have 22,500 entries, so nothing fails: anchor number *i* is simply paired "
        "with the prediction of another cell. On a square feature map that is the cell mirrored "
        "across the diagonal (row and column swapped), so the loss trains each cell to predict "
        "boxes for a place it cannot see.",
        "AnchorParams(bug_b1_x_outer=True)",
    ),
    Bug(
        "B2",
        "anchor labelling",
        "negatives assigned after the best-anchor positives",
        "a small GT box (40 x 30) ends with 0 positives",
        """label[gt_argmax_iou] = 1
label[max_iou >= pos_iou_threshold] = 1
label[max_iou < neg_iou_threshold] = 0""",
        "transcript lines 757-759",
        """label[max_iou < neg_iou_threshold] = 0   # negatives first ...
label[gt_argmax_iou] = 1                 # ... so every GT box keeps its best anchors
label[max_iou >= pos_iou_threshold] = 1""",
        "The three lines run in order and a later line overwrites an earlier one. Each GT box's "
        "best anchors are set to 1 first; then every anchor whose best IoU is under 0.3 is set to "
        "0, **including those best anchors** when even the best overlap is under 0.3. A small "
        "box (40 × 30 overlaps a 128 × 128 anchor with IoU 0.07) ends with no positive anchor at "
        "all, and the RPN is never taught to find it. Labelling the negatives first gives the "
        "best-anchor rule the last word, as the paper intends.",
        "AnchorTargetParams(bug_b2_negatives_last=True)",
    ),
    Bug(
        "B3",
        "anchor sampling",
        "`n_neg = n_sample * #pos` instead of `n_sample - #pos`",
        "all ~7469 negatives enter the loss instead of 211",
        """n_neg = n_sample * np.sum(label == 1)
neg_index = np.where(label == 0)[0]

if len(neg_index) > n_neg:""",
        "transcript lines 786-789",
        """n_neg = n_sample - np.sum(label == 1)
neg_index = np.where(label == 0)[0]

if len(neg_index) > n_neg:""",
        "The negatives should fill the rest of the 256-anchor mini-batch: 256 − #positives. "
        "Multiplying instead gives 256 × 45 = 11,520 on the zebras, more than all 7,469 negatives, "
        "so none is dropped: the classification loss sees thousands of background anchors for a "
        "few dozen objects (about 166 : 1 instead of 5 : 1), and the RPN learns that answering "
        "'background' everywhere is nearly always right.",
        "AnchorTargetParams(bug_b3_neg_count=True)",
    ),
    Bug(
        "B4",
        "anchor sampling",
        "`n_pos = 0.5 * 256` is a float",
        "`np.random.choice` fails once there are more than 128 positives",
        """n_pos = pos_ratio * n_sample

pos_index = np.where(label == 1)[0]

if len(pos_index) > n_pos:
    disable_index = np.random.choice(pos_index,
                                     size = (len(pos_index) - n_pos),
                                     replace=False)""",
        "transcript lines 775-783",
        """n_pos = int(pos_ratio * n_sample)""",
        "`0.5 * 256` is the float `128.0`. While there are at most 128 positives the `if` is false "
        "and the bad line never runs, so the notebook works on the zebras (45 positives). With "
        "more positives (a large object, many objects, or a lower positive threshold) "
        "`np.random.choice` receives the float size `len(pos_index) - 128.0` and NumPy raises "
        "`TypeError`. Making `n_pos` an integer fixes it.",
        "AnchorTargetParams(bug_b4_float_npos=True)",
    ),
    Bug(
        "B5",
        "anchor targets",
        "`width = boxes[:, 2] = boxes[:, 0]` (assignment, not minus)",
        "wrong targets; smoothL1 sum 16.17 instead of 5.20",
        """height = valid_anchor_boxes[:, 3] - valid_anchor_boxes[:, 1]
width = valid_anchor_boxes[:, 2] = valid_anchor_boxes[:, 0]
ctr_y = valid_anchor_boxes[:, 1] + 0.5 * height
ctr_x = valid_anchor_boxes[:, 0] + 0.5 * width""",
        "the anchor-target cell as SPEC section 4 records it (transcript line 819; the transcript "
        "copy prints a minus there)",
        """height = valid_anchor_boxes[:, 3] - valid_anchor_boxes[:, 1]
width = valid_anchor_boxes[:, 2] - valid_anchor_boxes[:, 0]
ctr_y = valid_anchor_boxes[:, 1] + 0.5 * height
ctr_x = valid_anchor_boxes[:, 0] + 0.5 * width""",
        "`a = b = c` is a chained assignment in Python, not a subtraction: it makes `width` the "
        "x1 column and writes x1 into the x2 column. Every anchor's width becomes its left edge "
        "x1 and its centre `x1 + 0.5 * width` becomes 1.5 · x1, so the x-targets `dx` and `dw` "
        "are measured against boxes that do not exist. Nothing fails; the RPN is trained toward "
        "meaningless deltas (an anchor at x1 = 600 'is' 600 pixels wide).",
        "AnchorTargetParams(bug_b5_width_assign=True)",
    ),
    Bug(
        "B6",
        "RPN head",
        "no ReLU after the 3x3 conv",
        "the conv and 1x1 layers collapse into one linear map",
        """x = conv1(output_map.to(DEVICE)) # output_map = faster_rcnn_feature_extractor(imgTensor)
pred_anchor_locs = reg_layer(x) # bounding box regressor output
pred_cls_scores = cls_layer(x) # classifier output""",
        "transcript lines 920-922",
        """x = F.relu(conv1(output_map.to(DEVICE)))
pred_anchor_locs = reg_layer(x)
pred_cls_scores = cls_layer(x)""",
        "With no non-linearity between them, a 3 × 3 convolution followed by a 1 × 1 convolution "
        "**is** a single 3 × 3 convolution (multiply the weights together). The 512 hidden "
        "channels add 2.4 million parameters but no expressive power: the RPN becomes a linear "
        "function of the features. The paper puts a ReLU after the 3 × 3 conv.",
        "RPNParams(bug_b6_no_relu=True)",
    ),
    Bug(
        "B7",
        "proposals",
        "ranked by the raw foreground logit",
        "not the object probability of a 2-way softmax",
        """objectness_score = pred_cls_scores.view(1, 50, 50, 9, 2)[: , : , : , 1].contiguous().view(1, -1)
...
order = score.ravel().argsort()[::-1]""",  # noqa: E501 (quoted as written)
        "transcript lines 945 and 1240",
        """objectness_score = F.softmax(pred_cls_scores.view(1, 50, 50, 9, 2), dim=4)[..., 1]
objectness_score = objectness_score.contiguous().view(1, -1)""",
        "The classifier gives two logits per anchor, background s0 and object s1, and is trained "
        "with a 2-way softmax: the object probability is `exp(s1) / (exp(s0) + exp(s1))` = "
        "sigmoid(s1 − s0). Ranking by s1 alone ignores s0: an anchor with s1 = 2, s0 = 5 "
        "(probability 0.05) outranks one with s1 = 1, s0 = −3 (probability 0.98). (The "
        "transcript prints `[: , : , : , 1]`, which would index the anchor axis; its printed "
        "shape `[1, 22500]` shows the notebook took the last axis, the object logit.)",
        "ProposalParams(bug_b7_logit_rank=True)",
    ),
    Bug(
        "B8",
        "NMS",
        "`order = order.argsort()[::-1]` visits boxes by descending index, not score",
        "only ~600 of the 2000 kept proposals match a correct NMS",
        """order = order[:n_train_pre_nms]
roi = roi[order, :]
...
order = order.argsort()[::-1]
keep = []

while (order.size > 0):
    i = order[0] # take the 1st elt in roder and append to keep""",
        "transcript lines 1253-1299",
        """order = np.arange(roi.shape[0])   # roi is already sorted by score, best first
keep = []

while (order.size > 0):
    i = order[0]""",
        "NMS must visit the boxes best score first: each kept box suppresses its weaker "
        "neighbours. `roi` is already sorted by score, and `order` holds the anchor numbers of "
        "those boxes; `order.argsort()` ranks them **by anchor number**, and `[::-1]` reverses "
        "that. So the loop visits the boxes from the highest anchor number (bottom-right of the "
        "image) to the lowest, whatever their score: a weak box suppresses a strong one that "
        "overlaps it, and the 2000 kept proposals are mostly the wrong ones.",
        "ProposalParams(bug_b8_index_order=True)",
    ),
    Bug(
        "B9",
        "RoI visualisation",
        "x and y swapped when slicing the feature map",
        "wrong pictures of RoI features",
        """xy_indices_and_rois = indices_and_rois[:, [0, 2, 1, 4, 3]]
...
im = output_map.narrow(0, im_idx, 1)[..., roi[1]:(roi[3]+1), roi[2]:(roi[4]+1)]  # pooling
...
im = output_map.narrow(0, im_idx, 1)[..., roi[2]:(roi[4]+1), roi[1]:(roi[3]+1)]  # pictures""",
        "transcript lines 1648, 1676 and 1705",
        """im = output_map.narrow(0, im_idx, 1)[..., roi[1]:(roi[3]+1), roi[2]:(roi[4]+1)]""",
        "`xy_indices_and_rois` reorders every RoI to (index, y1, x1, y2, x2), so `roi[1]:roi[3]` "
        "are feature-map **rows** and `roi[2]:roi[4]` **columns**, which is how the pooling loop "
        "slices. The visualisation cell slices the other way round: rows from the x range and "
        "columns from the y range, the region mirrored across the diagonal. The pooled features "
        "are right; only the pictures show the wrong place.",
        "a plain slice of this image's feature map",
    ),
    Bug(
        "B10",
        "RoI pooling",
        "`AdaptiveMaxPool2d(7, 7)` passes 7 as `return_indices`",
        "works by accident through `tmp[0]`",
        """size = (7, 7)
adaptive_max_pool = nn.AdaptiveMaxPool2d(size[0], size[1])
...
    tmp = adaptive_max_pool(im)
    output.append(tmp[0])""",
        "transcript lines 1664-1678",
        """adaptive_max_pool = nn.AdaptiveMaxPool2d(size)   # output_size = (7, 7)
...
    tmp = adaptive_max_pool(im)                    # [1, 512, 7, 7]
    output.append(tmp)""",
        "The signature is `AdaptiveMaxPool2d(output_size, return_indices=False)`: the second "
        "argument is not the width. `AdaptiveMaxPool2d(7, 7)` means a 7 × 7 output (one int is a "
        "square) with `return_indices=7`, which is truthy, so the layer returns a tuple "
        "(values, indices). `tmp[0]` then happens to pick the values, and the result is right "
        "by accident. Fixing only the constructor would break the loop: `tmp[0]` of a tensor "
        "drops the batch axis and `torch.cat` would stack 128 × 512 maps.",
        "plain torch on this image's feature map",
    ),
    Bug(
        "B11",
        "Fast R-CNN head",
        "Linear -> Linear with no ReLU",
        "the two layers collapse into one",
        """roi_head_classifier = nn.Sequential(*[nn.Linear(25088, 4096), nn.Linear(4096, 4096)]).to(DEVICE)""",  # noqa: E501
        "transcript line 1739",
        """roi_head_classifier = nn.Sequential(
    nn.Linear(25088, 4096), nn.ReLU(inplace=True),
    nn.Linear(4096, 4096), nn.ReLU(inplace=True),
).to(DEVICE)""",
        "Two linear layers in a row are one linear layer: W2·(W1·x + b1) + b2 = (W2·W1)·x + "
        "(W2·b1 + b2). The 120 million parameters of fc6 and fc7 can learn nothing that a "
        "single 25088 → 4096 layer could not, and the whole head becomes a linear function of "
        "the pooled features. VGG16's own classifier, and the paper, put a ReLU after each.",
        "HeadParams(bug_b11_no_relu=True)",
    ),
    Bug(
        "B12",
        "head loss",
        "RoI loc loss never reduced",
        "`roi_loss` and `total_loss` are matrices; `.backward()` fails",
        """x = torch.abs(mask_loc_targets - mask_loc_preds)
roi_loc_loss = ((x < 1).float() * 0.5 * x ** 2) + ((x >= 1).float() * (x - 0.5))
print(roi_loc_loss.sum())
...
roi_lambda = 10.
roi_loss = roi_cls_loss + (roi_lambda * roi_loc_loss)
print(rois_loss)
total_loss = rpn_loss + roi_loss
print(total_loss)""",
        "transcript lines 1871-1895",
        """N_reg = (gt_roi_label > 0).float().sum()
roi_loc_loss = roi_loc_loss.sum() / N_reg
roi_loss = roi_cls_loss + (roi_lambda * roi_loc_loss)
total_loss = rpn_loss + roi_loss""",
        "`roi_loc_loss` is the smooth-L1 of every coordinate of every positive RoI, a "
        "(#positives × 4) matrix. The cell prints its `.sum()` but never keeps it, so `roi_loss` "
        "is a scalar plus a matrix, and `total_loss` a matrix too (the tutorial's printout shows "
        "it). `total_loss.backward()` needs a scalar and fails. The RPN branch does it right: "
        "sum, then divide by the number of positives.",
        "HeadParams(bug_b12_unreduced=True)",
    ),
    Bug(
        "B13",
        "preprocessing",
        "no ImageNet normalisation before a pretrained VGG16",
        "features off the distribution the weights were trained on",
        """transform = transforms.Compose([transforms.ToTensor()])
imgTensor = transform(img).to(DEVICE)""",
        "transcript lines 287-288",
        """transform = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
imgTensor = transform(img).to(DEVICE)""",
        "The pretrained VGG16 learned its filters on images normalised with ImageNet's "
        "per-channel mean and standard deviation: values of mean about 0 and spread about 1. "
        "`ToTensor()` alone gives values in 0 … 1 with a mean near 0.45 and a spread near 0.25, "
        "so every first-layer response is shifted and shrunk compared with what the weights "
        "expect, and the difference compounds through 13 conv layers. Nothing fails; the "
        "features are just worse.",
        "BackboneParams(normalize=False)",
    ),
)
BUGS_BY_ID: dict[str, Bug] = {b.id: b for b in BUGS}

# The switch of each bug that frcnn_core can run: (stage, field, value that reproduces the bug).
BUG_FLAGS: dict[str, tuple[str, str, bool]] = {
    "B1": ("anchors", "bug_b1_x_outer", True),
    "B2": ("anchor_targets", "bug_b2_negatives_last", True),
    "B3": ("anchor_targets", "bug_b3_neg_count", True),
    "B4": ("anchor_targets", "bug_b4_float_npos", True),
    "B5": ("anchor_targets", "bug_b5_width_assign", True),
    "B6": ("rpn", "bug_b6_no_relu", True),
    "B7": ("proposals", "bug_b7_logit_rank", True),
    "B8": ("proposals", "bug_b8_index_order", True),
    "B11": ("head", "bug_b11_no_relu", True),
    "B12": ("head", "bug_b12_unreduced", True),
    "B13": ("backbone", "normalize", False),
}

# SPEC section 3: the tutorial's zebra boxes in the 800 x 800 input frame.
TUTORIAL_BOXES = (
    (89, 469, 249, 644),
    (238, 417, 415, 630),
    (435, 419, 580, 634),
    (617, 462, 765, 637),
)
TUTORIAL_SIZE = (800, 800)
# SPEC section 4, B2: a 40 x 30 box in the middle of an 800 x 800 frame.
SMALL_BOX = (380.0, 385.0, 420.0, 415.0)


def with_bug(params: PipelineParams, bug_id: str, on: bool) -> PipelineParams:
    """``params`` with bug ``bug_id`` switched on (the tutorial's variant) or off (the fix);
    every other setting as given. A new object: ``params`` is not modified."""
    stage, field, buggy = BUG_FLAGS[bug_id]
    sub = getattr(params, stage)
    value = buggy if on else not buggy
    if getattr(sub, field) == value:
        return params
    return dataclasses.replace(params, **{stage: dataclasses.replace(sub, **{field: value})})


def summary_rows() -> list[dict[str, str]]:
    """One row per bug for the overview table."""
    return [
        {
            "id": b.id,
            "where": b.where,
            "bug": b.bug.replace("`", ""),
            "effect": b.effect.replace("`", ""),
            "run here": "yes (switch)" if b.id in BUG_FLAGS else "yes (torch)",
        }
        for b in BUGS
    ]


# --- B1 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairingEffect:
    """Which cell's prediction each anchor is trained with.

    Attributes:
        cells: feature-map cells (Hf * Wf).
        self_paired: cells whose anchors get their own cell's prediction.
        anchor_centres (Tensor[P, 2]): where the shown anchors are (x, y).
        cell_centres (Tensor[P, 2]): centre of the cell whose prediction each is paired with.
        anchor_boxes (Tensor[P, 4]): the shown anchors.
        positives: positive (sampled) anchors; the shown ones when there are any.
        inside_gt: positives whose paired cell centre lies inside their GT box.
    """

    cells: int
    self_paired: int
    anchor_centres: torch.Tensor
    cell_centres: torch.Tensor
    anchor_boxes: torch.Tensor
    positives: int
    inside_gt: int


def _centres(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def pairing_effect(
    grid: AnchorResult,
    targets: AnchorTargetResult,
    row_major: AnchorResult,
    gt_boxes: torch.Tensor,
    sample_cells: int = 40,
) -> PairingEffect:
    """Anchor ``i`` of ``grid`` is trained with RPN output ``i``, which the head computes at the
    cell of ``row_major``'s anchor ``i``. Shows the positives, or a seeded sample of cells when
    there are none.

    Args:
        grid: the anchors the labels were computed on (x-outer for the tutorial).
        targets: labels on ``grid``.
        row_major: the anchors in the RPN output's order.
        gt_boxes (Tensor[G, 4]): input frame.
    """
    per_cell = grid.base_anchors.shape[0]
    cell_of_index = _centres(row_major.anchors[::per_cell])  # [Hf*Wf, 2]
    anchor_cell = _centres(grid.anchors[::per_cell])
    self_paired = int(torch.isclose(cell_of_index, anchor_cell).all(dim=1).sum())
    pos = torch.nonzero(targets.labels == 1).squeeze(1)
    index = grid.inside_index[pos]
    inside = 0
    if pos.numel():
        cell = cell_of_index[index // per_cell]
        gt = gt_boxes.double()[targets.argmax_gt[pos]]
        inside = int(
            (
                (cell[:, 0] >= gt[:, 0])
                & (cell[:, 0] <= gt[:, 2])
                & (cell[:, 1] >= gt[:, 1])
                & (cell[:, 1] <= gt[:, 3])
            ).sum()
        )
    else:
        cells = cell_of_index.shape[0]
        pick = torch.randperm(cells, generator=torch.Generator().manual_seed(0))[:sample_cells]
        index = pick * per_cell + per_cell // 2
    return PairingEffect(
        cells=int(cell_of_index.shape[0]),
        self_paired=self_paired,
        anchor_centres=_centres(grid.anchors[index]),
        cell_centres=cell_of_index[index // per_cell],
        anchor_boxes=grid.anchors[index],
        positives=int(pos.numel()),
        inside_gt=inside,
    )


def pairing_figure(
    pixels: np.ndarray,
    effect: PairingEffect,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    height: int = 440,
) -> go.Figure:
    """Anchors (green) joined by a red line to the cell whose prediction they are trained with.

    The joining lines are an SVG ``Scatter``: at most a few hundred segments, and WebGL lines
    are drawn flat on the image's reversed y axis (plotly.js issue #2904)."""
    fig = image_figure(pixels, height=height, dim=0.55)
    what = "positive anchor" if effect.positives else "anchor (sample)"
    add_boxes(fig, effect.anchor_boxes, POSITIVE_COLOUR, f"{what}: where it is", 1, 0.6)
    a = effect.anchor_centres.numpy()
    c = effect.cell_centres.numpy()
    xs = np.stack((a[:, 0], c[:, 0], np.full(len(a), np.nan)), axis=1).reshape(-1)
    ys = np.stack((a[:, 1], c[:, 1], np.full(len(a), np.nan)), axis=1).reshape(-1)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line=dict(color=NEGATIVE_COLOUR, width=1.5),
            name="paired with",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scattergl(
            x=c[:, 0],
            y=c[:, 1],
            mode="markers",
            marker=dict(color=NEGATIVE_COLOUR, size=9, symbol="x"),
            name="cell whose prediction it gets",
            hoverinfo="skip",
        )
    )
    add_gt(fig, gt_boxes, gt_labels)
    return fig


# --- B2 -----------------------------------------------------------------------------------------


def positives_per_box(targets: AnchorTargetResult, pos_iou: float) -> list[int]:
    """Positive anchors each GT box produced: its best anchors (ties) or IoU >= ``pos_iou``,
    if the labelling left them positive."""
    is_pos = targets.labels_unsampled == 1  # [K]
    ious = targets.ious  # [K, G]
    best = targets.gt_best_iou  # [G]
    claimed = ((ious == best[None, :]) & (best[None, :] > 0)) | (ious >= pos_iou)
    return (claimed & is_pos[:, None]).sum(dim=0).tolist()


@dataclass(frozen=True)
class SmallBoxDemo:
    box: tuple[float, float, float, float]
    best_iou: float
    fixed_positives: int
    tutorial_positives: int


@functools.cache
def small_box_demo(box: tuple[float, float, float, float] = SMALL_BOX) -> SmallBoxDemo:
    """SPEC's B2 example: one 40 x 30 box, tutorial anchors and thresholds, 800 x 800 frame."""
    grid = generate_anchors((50, 50), TUTORIAL_SIZE, AnchorParams())
    gt = torch.tensor([box], dtype=torch.float32)
    fixed, tutorial = (
        anchor_targets(
            grid.anchors, grid.inside_index, gt, AnchorTargetParams(bug_b2_negatives_last=buggy)
        )
        for buggy in (False, True)
    )
    return SmallBoxDemo(
        box,
        float(fixed.gt_best_iou[0]),
        fixed.counts()["positive"],
        tutorial.counts()["positive"],
    )


# --- B3 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingEffect:
    sampled_positive: int
    sampled_negative: int
    cls_loss: float

    @property
    def negatives_per_positive(self) -> float:
        return self.sampled_negative / max(self.sampled_positive, 1)


def sampling_effect(
    rpn: RPNOutput, targets: AnchorTargetResult, params: RPNParams
) -> SamplingEffect:
    """What the RPN's classification loss sees with these labels."""
    counts = targets.counts()
    loss = rpn_loss(rpn, targets.labels_all, targets.targets_all, params)
    return SamplingEffect(counts["sampled_positive"], counts["sampled_negative"], float(loss.cls))


# --- B4 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatCountEffect:
    positives: int
    limit: float
    error: str | None


def float_count_effect(
    anchors: torch.Tensor,
    inside_index: torch.Tensor,
    gt_boxes: torch.Tensor,
    params: AnchorTargetParams,
) -> FloatCountEffect:
    """Run the sampling with the float ``n_pos``: the error message, or None if not triggered."""
    buggy = dataclasses.replace(params, bug_b4_float_npos=True)
    fixed = dataclasses.replace(params, bug_b4_float_npos=False)
    positives = anchor_targets(anchors, inside_index, gt_boxes, fixed).counts()["positive"]
    limit = params.pos_fraction * params.batch_size
    try:
        anchor_targets(anchors, inside_index, gt_boxes, buggy)
    except TutorialBugError as exc:
        return FloatCountEffect(positives, limit, str(exc))
    return FloatCountEffect(positives, limit, None)


@functools.cache
def float_count_demo(pos_iou: float = 0.5) -> FloatCountEffect:
    """The zebra boxes of SPEC section 3 with a positive IoU of 0.5: 129 positives, > 128."""
    grid = generate_anchors((50, 50), TUTORIAL_SIZE, AnchorParams())
    gt = torch.tensor(TUTORIAL_BOXES, dtype=torch.float32)
    return float_count_effect(
        grid.anchors, grid.inside_index, gt, AnchorTargetParams(pos_iou=pos_iou)
    )


# --- B5 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetEffect:
    positives: int
    zero_prediction_sum: float  # sum smoothL1(0 - t) over the sampled positives
    rpn_loc_loss: float  # the RPN's loc loss with this image's current predictions
    targets: torch.Tensor  # [P, 4] the positives' targets


def target_effect(rpn: RPNOutput, targets: AnchorTargetResult, params: RPNParams) -> TargetEffect:
    pos = targets.labels == 1
    t = targets.targets[pos]
    zero = float(smooth_l1_sum(torch.zeros_like(t), t, params.smooth_l1_beta))
    loss = rpn_loss(rpn, targets.labels_all, targets.targets_all, params)
    return TargetEffect(int(pos.sum()), zero, float(loss.loc), t)


def targets_table(
    grid: AnchorResult, targets: AnchorTargetResult, fixed: torch.Tensor, buggy: torch.Tensor
) -> list[dict[str, float | str]]:
    """The first positives' anchors and their (dx, dw) targets, fixed vs tutorial.

    Args:
        fixed, buggy (Tensor[P, 4]): targets of the sampled positives of ``targets`` (B5 does
            not change which anchors are positive, so the rows line up).
    """
    pos = torch.nonzero(targets.labels == 1).squeeze(1)
    rows = []
    for k, i in enumerate(pos.tolist()[:8]):
        x1, y1, x2, y2 = grid.inside_anchors[i].tolist()
        rows.append(
            {
                "anchor": f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})",
                "width": x2 - x1,
                "tutorial width (= x1)": x1,
                "dx fixed": float(fixed[k, 0]),
                "dx tutorial": float(buggy[k, 0]),
                "dw fixed": float(fixed[k, 2]),
                "dw tutorial": float(buggy[k, 2]),
            }
        )
    return rows


# --- B6 and B11: linearity ----------------------------------------------------------------------


@dataclass(frozen=True)
class Linearity:
    """``f(a + b) - f(a) - f(b) + f(0)`` relative to ``|f(a + b) - f(0)|``: 0 for an affine map.

    Attributes:
        with_relu: the residual of the fixed layers.
        without_relu: the residual of the tutorial's layers.
        merged_error: max |tutorial output - the single merged layer's output| / max |output|
            (NaN when not computed).
        params_stacked / params_merged: parameters of the two layers / of the merged one.
    """

    with_relu: float
    without_relu: float
    merged_error: float
    params_stacked: int
    params_merged: int


def _residual(f, a: torch.Tensor, b: torch.Tensor) -> float:
    out = f(torch.cat((a, b, a + b, torch.zeros_like(a))))
    fa, fb, fab, f0 = out.chunk(4)
    scale = (fab - f0).abs().max().clamp(min=1e-12)
    return float((fab - fa - fb + f0).abs().max() / scale)


def feature_windows(features: torch.Tensor, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``size`` x ``size`` windows of the feature map: the top-left and the centre."""
    hf, wf = features.shape[-2:]
    size = max(1, min(size, hf, wf))
    r, c = (hf - size) // 2, (wf - size) // 2
    return features[..., :size, :size], features[..., r : r + size, c : c + size]


def rpn_linearity(head: RPNHead, features: torch.Tensor, params: RPNParams) -> Linearity:
    """B6 on two windows of this image's feature map, with the session's RPN head, through
    :func:`rpn_forward` with ``bug_b6_no_relu`` off and on."""
    a, b = feature_windows(features.float())

    def f(bug: bool):
        variant = dataclasses.replace(params, bug_b6_no_relu=bug)

        def run(x: torch.Tensor) -> torch.Tensor:
            out = rpn_forward(x, head, variant)  # batch-major: chunk(4) splits the inputs
            return torch.cat((out.locs, out.scores), dim=1)

        return run

    with torch.no_grad():
        res_relu = _residual(f(False), a, b)
        res_lin = _residual(f(True), a, b)
        # conv 3x3 (W3, b3) then conv 1x1 (W1, b1) = one conv 3x3 with W1·W3 and W1·b3 + b1.
        w1 = torch.cat((head.loc.weight, head.score.weight))[:, :, 0, 0]  # [O, M]
        b1 = torch.cat((head.loc.bias, head.score.bias))
        w3 = head.conv.weight  # [M, C, 3, 3]
        merged_w = torch.einsum("om,mckl->ockl", w1, w3)
        merged_b = w1 @ head.conv.bias + b1
        merged = F.conv2d(b, merged_w, merged_b, padding=1)
        h = head.conv(b)
        reference = torch.cat((head.loc(h), head.score(h)), dim=1)
        merged_error = float(
            (merged - reference).abs().max() / reference.abs().max().clamp(min=1e-12)
        )
    stacked = sum(p.numel() for m in (head.conv, head.loc, head.score) for p in m.parameters())
    return Linearity(res_relu, res_lin, merged_error, stacked, merged_w.numel() + merged_b.numel())


def head_linearity(head: FastRCNNHead, pooled: torch.Tensor, params: HeadParams) -> Linearity:
    """B11 on two pooled RoIs (Tensor[2, 512, 7, 7]), with the session's Fast R-CNN head,
    through :func:`head_forward` with ``bug_b11_no_relu`` off and on."""
    a, b = pooled[:1].float(), pooled[1:2].float()

    def f(bug: bool):
        variant = dataclasses.replace(params, bug_b11_no_relu=bug)

        def run(x: torch.Tensor) -> torch.Tensor:
            out = head_forward(x, head, variant)
            return torch.cat((out.scores, out.deltas.flatten(1)), dim=1)

        return run

    with torch.no_grad():
        res_relu = _residual(f(False), a, b)
        res_lin = _residual(f(True), a, b)
    stacked = sum(p.numel() for m in (head.fc6, head.fc7) for p in m.parameters())
    merged = head.fc6.in_features * head.fc7.out_features + head.fc7.out_features
    return Linearity(res_relu, res_lin, float("nan"), stacked, merged)


# --- B7 and B8 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalOverlap:
    fixed_kept: int
    tutorial_kept: int
    common: int
    pre_nms_common: int
    pre_nms: int
    fixed_mean_prob: float  # mean object probability of the kept proposals
    tutorial_mean_prob: float


def proposal_overlap(
    fixed: ProposalResult, buggy: ProposalResult, objectness: torch.Tensor
) -> ProposalOverlap:
    """How many kept proposals (anchor numbers) the two variants share.

    Args:
        objectness (Tensor[N]): the softmax object probability of every anchor.
    """
    a, b = fixed.keep_index.cpu(), buggy.keep_index.cpu()
    common = int(torch.isin(a, b).sum())
    pre = int(torch.isin(fixed.pre_nms_index.cpu(), buggy.pre_nms_index.cpu()).sum())
    prob = objectness.cpu()

    def mean(index: torch.Tensor) -> float:
        return float(prob[index].mean()) if index.numel() else float("nan")

    return ProposalOverlap(
        fixed_kept=int(a.numel()),
        tutorial_kept=int(b.numel()),
        common=common,
        pre_nms_common=pre,
        pre_nms=int(fixed.pre_nms_index.numel()),
        fixed_mean_prob=mean(a),
        tutorial_mean_prob=mean(b),
    )


def logit_vs_probability_figure(
    scores: torch.Tensor,
    fixed_keep: torch.Tensor,
    buggy_keep: torch.Tensor,
    max_points: int = 4000,
    height: int = 420,
) -> go.Figure:
    """Every anchor's object logit s1 against its object probability sigmoid(s1 - s0): the two
    rankings disagree wherever the cloud is not a single increasing curve."""
    s = scores.detach().cpu().float()
    logit = s[:, 1]
    prob = torch.softmax(s, dim=1)[:, 1]
    n = s.shape[0]
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_points]
    fixed_only = fixed_keep.cpu()[~torch.isin(fixed_keep.cpu(), buggy_keep.cpu())]
    buggy_only = buggy_keep.cpu()[~torch.isin(buggy_keep.cpu(), fixed_keep.cpu())]
    fig = go.Figure()
    shown = f" ({sample.numel()} of {n} drawn)" if sample.numel() < n else ""
    for index, colour, name, size in (
        (sample, IGNORED_COLOUR, f"anchors{shown}", 3),
        (fixed_only, PROPOSAL_COLOUR, f"kept only by probability: {fixed_only.numel()}", 5),
        (buggy_only, ACCENT_COLOUR, f"kept only by logit: {buggy_only.numel()}", 5),
    ):
        fig.add_trace(
            go.Scattergl(
                x=logit[index].numpy(),
                y=prob[index].numpy(),
                mode="markers",
                marker=dict(color=colour, size=size, opacity=0.7),
                name=name,
                hovertemplate="logit s1 %{x:.4f}<br>probability %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        xaxis_title="object logit s1 (tutorial's ranking)",
        yaxis_title="object probability (correct ranking)",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
    )
    return fig


def kept_figure(
    pixels: np.ndarray,
    rois: torch.Tensor,
    keep: torch.Tensor,
    other_keep: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    colour: str = PROPOSAL_COLOUR,
    height: int = 440,
) -> go.Figure:
    """Kept proposals: those the other variant also kept (grey) and those only this one kept.

    Args:
        rois (Tensor[N, 4]): every anchor's clipped decoded box (``ProposalResult.clipped``).
        keep, other_keep (Tensor[R]): anchor numbers kept by this and by the other variant.
    """
    keep = keep.cpu()
    both = torch.isin(keep, other_keep.cpu())
    fig = image_figure(pixels, height=height, dim=0.55)
    boxes = rois.cpu()
    add_boxes(fig, boxes[keep[both]], IGNORED_COLOUR, f"kept by both: {int(both.sum())}", 1, 0.35)
    add_boxes(fig, boxes[keep[~both]], colour, f"kept only here: {int((~both).sum())}", 1, 0.7)
    add_gt(fig, gt_boxes, gt_labels)
    return fig


# --- B9 and B10 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crops:
    """The tutorial's RoI slices of the feature map, in feature cells.

    Attributes:
        cells: (x1, y1, x2, y2) of the RoI in feature cells (``box / 16``, truncated).
        correct (Tensor[h, w]): channel mean of rows y1..y2, columns x1..x2.
        swapped (Tensor[h', w']): channel mean of rows x1..x2, columns y1..y2 (may be empty).
        swapped_box: the swapped region in input pixels (x1, y1, x2, y2).
    """

    cells: tuple[int, int, int, int]
    correct: torch.Tensor
    swapped: torch.Tensor
    swapped_box: tuple[float, float, float, float]


def demo_box(gt_boxes: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """The first GT box, or the centre quarter of the image when there is none."""
    if gt_boxes.shape[0]:
        return gt_boxes[0].float(), True
    h, w = image_size
    return torch.tensor([w / 4, h / 4, 3 * w / 4, 3 * h / 4]), False


def roi_crops(features: torch.Tensor, box: torch.Tensor, stride: int = 16) -> Crops:
    """B9: the slice the pooling uses and the slice the visualisation used, for one RoI."""
    x1, y1, x2, y2 = (box.double() / stride).long().tolist()
    fmap = features[0].float().mean(dim=0).cpu()  # [Hf, Wf]
    correct = fmap[y1 : y2 + 1, x1 : x2 + 1]
    swapped = fmap[x1 : x2 + 1, y1 : y2 + 1]
    hf, wf = fmap.shape
    # The swapped slice covers rows x1..x2 and columns y1..y2, clipped by the map's size.
    sx1, sx2 = min(y1, wf), min(y2 + 1, wf)
    sy1, sy2 = min(x1, hf), min(x2 + 1, hf)
    return Crops(
        (x1, y1, x2, y2),
        correct,
        swapped,
        (sx1 * stride, sy1 * stride, sx2 * stride, sy2 * stride),
    )


def crops_figure(
    pixels: np.ndarray,
    box: torch.Tensor,
    crops: Crops,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    height: int = 440,
) -> go.Figure:
    """Where the two slices of B9 lie on the image."""
    fig = image_figure(pixels, height=height, dim=0.55)
    add_gt(fig, gt_boxes, gt_labels)
    x1, y1, x2, y2 = crops.cells
    pooled = torch.tensor([[x1 * 16, y1 * 16, (x2 + 1) * 16, (y2 + 1) * 16]], dtype=torch.float32)
    add_boxes(fig, pooled, POSITIVE_COLOUR, "pooling slice (rows = y)", 3)
    if crops.swapped.numel():
        swapped = torch.tensor([crops.swapped_box], dtype=torch.float32)
        add_boxes(fig, swapped, NEGATIVE_COLOUR, "tutorial's picture slice (rows = x)", 3)
    return fig


def crop_heatmap(values: torch.Tensor, title: str, zmin: float, zmax: float) -> go.Figure:
    return heatmap(values.numpy(), title, zmin=zmin, zmax=zmax, height=280)


@dataclass(frozen=True)
class PoolDemo:
    """What ``nn.AdaptiveMaxPool2d(7, 7)`` returns on one RoI of this image."""

    return_indices: object
    output_type: str
    values_shape: tuple[int, ...]
    indices_shape: tuple[int, ...]
    matches_fixed: bool
    fixed_item_shape: tuple[int, ...]


def adaptive_pool_demo(features: torch.Tensor, box: torch.Tensor, stride: int = 16) -> PoolDemo:
    """B10: the tutorial's layer on the tutorial's slice of one RoI, against the fixed layer."""
    x1, y1, x2, y2 = (box.double() / stride).long().tolist()
    im = features[..., y1 : y2 + 1, x1 : x2 + 1].float()  # [1, C, h, w]
    size = (7, 7)
    tutorial = nn.AdaptiveMaxPool2d(size[0], size[1])
    fixed = nn.AdaptiveMaxPool2d(size)
    with torch.no_grad():
        tmp = tutorial(im)
        ref = fixed(im)
    values, indices = tmp
    return PoolDemo(
        return_indices=tutorial.return_indices,
        output_type=type(tmp).__name__,
        values_shape=tuple(values.shape),
        indices_shape=tuple(indices.shape),
        matches_fixed=bool(torch.equal(values, ref)),
        fixed_item_shape=tuple(ref[0].shape),
    )


# --- B12 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnreducedEffect:
    error: str | None
    fixed: HeadLoss
    per_element: torch.Tensor  # [P, 4] the matrix the tutorial added to the scalar losses
    sampled: int  # RoIs in the loss


def unreduced_effect(
    output: HeadOutput, labels: torch.Tensor, targets: torch.Tensor, params: HeadParams
) -> UnreducedEffect:
    """Run the head loss both ways on this image's sampled RoIs."""
    buggy = dataclasses.replace(params, bug_b12_unreduced=True)
    fixed = dataclasses.replace(params, bug_b12_unreduced=False)
    error = None
    try:
        compute_head_loss(output, labels, targets, buggy)
    except UnreducedLossError as exc:
        error = str(exc)
    loss = compute_head_loss(output, labels, targets, fixed)
    labels = labels.to(output.scores.device)
    pos = torch.nonzero(labels > 0).squeeze(1)
    picked = output.deltas.detach()[pos, labels[pos]]
    per_element = F.smooth_l1_loss(
        picked, targets.to(picked.device)[pos].to(picked.dtype), reduction="none"
    )
    fixed_loss = HeadLoss(
        cls=loss.cls.detach().cpu(), loc=loss.loc.detach().cpu(), n_pos=loss.n_pos
    )
    return UnreducedEffect(error, fixed_loss, per_element.cpu(), int(labels.numel()))


# --- B13 ----------------------------------------------------------------------------------------


def input_statistics(pixels: np.ndarray) -> list[dict[str, float | str]]:
    """Per-channel mean and std of the backbone's input, without and with normalisation."""
    image = torch.from_numpy(np.ascontiguousarray(pixels))
    raw = image_to_tensor(image, BackboneParams(normalize=False))[0].flatten(1)  # [3, H*W]
    norm = image_to_tensor(image, BackboneParams(normalize=True))[0].flatten(1)
    return [
        {
            "channel": name,
            "tutorial mean": float(raw[c].mean()),
            "tutorial std": float(raw[c].std()),
            "fixed mean": float(norm[c].mean()),
            "fixed std": float(norm[c].std()),
        }
        for c, name in enumerate(("R", "G", "B"))
    ]


@dataclass(frozen=True)
class FeatureChange:
    cosine: float  # cosine similarity of the two flattened feature maps
    norm_ratio: float  # |tutorial| / |fixed|
    zero_fraction_fixed: float  # share of exactly-zero activations (dead ReLUs)
    zero_fraction_tutorial: float


def feature_change(fixed: torch.Tensor, tutorial: torch.Tensor) -> FeatureChange:
    a = fixed.float().flatten().cpu()
    b = tutorial.float().flatten().cpu()
    cosine = float(F.cosine_similarity(a, b, dim=0))
    return FeatureChange(
        cosine=cosine,
        norm_ratio=float(b.norm() / a.norm().clamp(min=1e-12)),
        zero_fraction_fixed=float((a == 0).float().mean()),
        zero_fraction_tutorial=float((b == 0).float().mean()),
    )


def mean_map_figure(features: torch.Tensor, title: str) -> go.Figure:
    """The channel mean of a feature map [1, C, Hf, Wf]."""
    return heatmap(features[0].float().mean(dim=0).cpu().numpy(), title, height=320)
