"""The tutorial's thirteen bugs: for each, the original code quoted from the transcript, the
fix, why it is wrong, and the setting that runs the buggy variant where ``frcnn_core`` can.

The buggy variants are built with :func:`with_bug` on a copy of the settings: a user's own
pipeline settings are never switched to a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

from frcnn_core.i18n import N_, _
from frcnn_core.params import PipelineParams

TRANSCRIPT = N_("the tutorial's transcript")


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

    The text fields are English, marked for the catalogue (``N_``): the page shows them
    through ``_()``, in the session's language. ``id``, ``original`` and ``fix`` are not
    translated (an id is in the page's URL; code stays code).
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
        N_("anchors vs RPN output"),
        N_("anchors built x-outer, RPN output flattened y-outer"),
        N_("every anchor is paired with the prediction of the mirrored cell"),
        """for i in range(len(ctr_x)):
    for j in range(len(ctr_y)):
        ctr[index, 1] = ctr_x[i] - 8
        ctr[index, 0] = ctr_y[j] - 8
        index += 1
...
pred_anchor_locs = pred_anchor_locs.permute(0, 2, 3, 1).contiguous().view(1, -1, 4)""",
        N_("transcript lines 386-390 (anchor centres) and 935 (RPN output)"),
        """for j in range(len(ctr_y)):      # y outer: row by row,
    for i in range(len(ctr_x)):  # like permute(0, 2, 3, 1)
        ctr[index, 1] = ctr_x[i] - 8
        ctr[index, 0] = ctr_y[j] - 8
        index += 1""",
        N_(
            "The RPN makes one prediction per feature-map cell, and `permute(0, 2, 3, 1).view(1, "
            "-1, 4)` lists them **row by row** (y outer, x inner). The tutorial's loops list the "
            "anchor centres **column by column** (x in the outer loop). Both lists have 22,500 "
            "entries, so nothing fails: anchor number *i* is simply paired with the prediction of "
            "another cell. On a square feature map that is the cell mirrored across the diagonal "
            "(row and column swapped), so the loss trains each cell to predict boxes for a place "
            "it cannot see."
        ),
        "AnchorParams(bug_b1_x_outer=True)",
    ),
    Bug(
        "B2",
        N_("anchor labelling"),
        N_("negatives assigned after the best-anchor positives"),
        N_("a small GT box (40 x 30) ends with 0 positives"),
        """label[gt_argmax_iou] = 1
label[max_iou >= pos_iou_threshold] = 1
label[max_iou < neg_iou_threshold] = 0""",
        N_("transcript lines 757-759"),
        """label[max_iou < neg_iou_threshold] = 0   # negatives first ...
label[gt_argmax_iou] = 1                 # ... so every GT box keeps its best anchors
label[max_iou >= pos_iou_threshold] = 1""",
        N_(
            "The three lines run in order and a later line overwrites an earlier one. Each GT "
            "box's best anchors are set to 1 first; then every anchor whose best IoU is under 0.3 "
            "is set to 0, **including those best anchors** when even the best overlap is under "
            "0.3. A small box (40 × 30 overlaps a 128 × 128 anchor with IoU 0.07) ends with no "
            "positive anchor at all, and the RPN is never taught to find it. Labelling the "
            "negatives first gives the best-anchor rule the last word, as the paper intends."
        ),
        "AnchorTargetParams(bug_b2_negatives_last=True)",
    ),
    Bug(
        "B3",
        N_("anchor sampling"),
        N_("`n_neg = n_sample * #pos` instead of `n_sample - #pos`"),
        N_("all ~7469 negatives enter the loss instead of 211"),
        """n_neg = n_sample * np.sum(label == 1)
neg_index = np.where(label == 0)[0]

if len(neg_index) > n_neg:""",
        N_("transcript lines 786-789"),
        """n_neg = n_sample - np.sum(label == 1)
neg_index = np.where(label == 0)[0]

if len(neg_index) > n_neg:""",
        N_(
            "The negatives should fill the rest of the 256-anchor mini-batch: 256 − #positives. "
            "Multiplying instead gives 256 × 45 = 11,520 on the zebras, more than all 7,469 "
            "negatives, so none is dropped: the classification loss sees thousands of background "
            "anchors for a few dozen objects (about 166 : 1 instead of 5 : 1), and the RPN learns "
            "that answering 'background' everywhere is nearly always right."
        ),
        "AnchorTargetParams(bug_b3_neg_count=True)",
    ),
    Bug(
        "B4",
        N_("anchor sampling"),
        N_("`n_pos = 0.5 * 256` is a float"),
        N_("`np.random.choice` fails once there are more than 128 positives"),
        """n_pos = pos_ratio * n_sample

pos_index = np.where(label == 1)[0]

if len(pos_index) > n_pos:
    disable_index = np.random.choice(pos_index,
                                     size = (len(pos_index) - n_pos),
                                     replace=False)""",
        N_("transcript lines 775-783"),
        """n_pos = int(pos_ratio * n_sample)""",
        N_(
            "`0.5 * 256` is the float `128.0`. While there are at most 128 positives the `if` is "
            "false and the bad line never runs, so the notebook works on the zebras (45 "
            "positives). With more positives (a large object, many objects, or a lower positive "
            "threshold) `np.random.choice` receives the float size `len(pos_index) - 128.0` and "
            "NumPy raises `TypeError`. Making `n_pos` an integer fixes it."
        ),
        "AnchorTargetParams(bug_b4_float_npos=True)",
    ),
    Bug(
        "B5",
        N_("anchor targets"),
        N_("`width = boxes[:, 2] = boxes[:, 0]` (assignment, not minus)"),
        N_("wrong targets; smoothL1 sum 16.17 instead of 5.20"),
        """height = valid_anchor_boxes[:, 3] - valid_anchor_boxes[:, 1]
width = valid_anchor_boxes[:, 2] = valid_anchor_boxes[:, 0]
ctr_y = valid_anchor_boxes[:, 1] + 0.5 * height
ctr_x = valid_anchor_boxes[:, 0] + 0.5 * width""",
        N_(
            "the anchor-target cell as the explorer's specification records it (transcript line "
            "819; this copy of the transcript prints a minus there)"
        ),
        """height = valid_anchor_boxes[:, 3] - valid_anchor_boxes[:, 1]
width = valid_anchor_boxes[:, 2] - valid_anchor_boxes[:, 0]
ctr_y = valid_anchor_boxes[:, 1] + 0.5 * height
ctr_x = valid_anchor_boxes[:, 0] + 0.5 * width""",
        N_(
            "`a = b = c` is a chained assignment in Python, not a subtraction: it makes `width` "
            "the x1 column and writes x1 into the x2 column. Every anchor's width becomes its left "
            "edge x1 and its centre `x1 + 0.5 * width` becomes 1.5 · x1, so the x-targets `dx` and "
            "`dw` are measured against boxes that do not exist. Nothing fails; the RPN is trained "
            "toward meaningless deltas (an anchor at x1 = 600 'is' 600 pixels wide)."
        ),
        "AnchorTargetParams(bug_b5_width_assign=True)",
    ),
    Bug(
        "B6",
        N_("RPN head"),
        N_("no ReLU after the 3x3 conv"),
        N_("the conv and 1x1 layers collapse into one linear map"),
        """x = conv1(output_map.to(DEVICE)) # output_map = faster_rcnn_feature_extractor(imgTensor)
pred_anchor_locs = reg_layer(x) # bounding box regressor output
pred_cls_scores = cls_layer(x) # classifier output""",
        N_("transcript lines 920-922"),
        """x = F.relu(conv1(output_map.to(DEVICE)))
pred_anchor_locs = reg_layer(x)
pred_cls_scores = cls_layer(x)""",
        N_(
            "With no non-linearity between them, a 3 × 3 convolution followed by a 1 × 1 "
            "convolution **is** a single 3 × 3 convolution (multiply the weights together). The "
            "512 hidden channels add 2.4 million parameters but no expressive power: the RPN "
            "becomes a linear function of the features. The paper puts a ReLU after the 3 × 3 conv."
        ),
        "RPNParams(bug_b6_no_relu=True)",
    ),
    Bug(
        "B7",
        N_("proposals"),
        N_("ranked by the raw foreground logit"),
        N_("not the object probability of a 2-way softmax"),
        """objectness_score = pred_cls_scores.view(1, 50, 50, 9, 2)[: , : , : , 1].contiguous().view(1, -1)
...
order = score.ravel().argsort()[::-1]""",  # noqa: E501 (quoted as written)
        N_("transcript lines 945 and 1240"),
        """objectness_score = F.softmax(pred_cls_scores.view(1, 50, 50, 9, 2), dim=4)[..., 1]
objectness_score = objectness_score.contiguous().view(1, -1)""",
        N_(
            "The classifier gives two logits per anchor, background s0 and object s1, and is "
            "trained with a 2-way softmax: the object probability is `exp(s1) / (exp(s0) + "
            "exp(s1))` = sigmoid(s1 − s0). Ranking by s1 alone ignores s0: an anchor with s1 = 2, "
            "s0 = 5 (probability 0.05) outranks one with s1 = 1, s0 = −3 (probability 0.98). (The "
            "transcript prints `[: , : , : , 1]`, which would index the anchor axis; its printed "
            "shape `[1, 22500]` shows the notebook took the last axis, the object logit.)"
        ),
        "ProposalParams(bug_b7_logit_rank=True)",
    ),
    Bug(
        "B8",
        N_("NMS"),
        N_("`order = order.argsort()[::-1]` visits boxes by descending index, not score"),
        N_("only ~600 of the 2000 kept proposals match a correct NMS"),
        """order = order[:n_train_pre_nms]
roi = roi[order, :]
...
order = order.argsort()[::-1]
keep = []

while (order.size > 0):
    i = order[0] # take the 1st elt in roder and append to keep""",
        N_("transcript lines 1253-1299"),
        """order = np.arange(roi.shape[0])   # roi is already sorted by score, best first
keep = []

while (order.size > 0):
    i = order[0]""",
        N_(
            "NMS must visit the boxes best score first: each kept box suppresses its weaker "
            "neighbours. `roi` is already sorted by score, and `order` holds the anchor numbers of "
            "those boxes; `order.argsort()` ranks them **by anchor number**, and `[::-1]` reverses "
            "that. So the loop visits the boxes from the highest anchor number (bottom-right of "
            "the image) to the lowest, whatever their score: a weak box suppresses a strong one "
            "that overlaps it, and the 2000 kept proposals are mostly the wrong ones."
        ),
        "ProposalParams(bug_b8_index_order=True)",
    ),
    Bug(
        "B9",
        N_("RoI visualisation"),
        N_("x and y swapped when slicing the feature map"),
        N_("wrong pictures of RoI features"),
        """xy_indices_and_rois = indices_and_rois[:, [0, 2, 1, 4, 3]]
...
im = output_map.narrow(0, im_idx, 1)[..., roi[1]:(roi[3]+1), roi[2]:(roi[4]+1)]  # pooling
...
im = output_map.narrow(0, im_idx, 1)[..., roi[2]:(roi[4]+1), roi[1]:(roi[3]+1)]  # pictures""",
        N_("transcript lines 1648, 1676 and 1705"),
        """im = output_map.narrow(0, im_idx, 1)[..., roi[1]:(roi[3]+1), roi[2]:(roi[4]+1)]""",
        N_(
            "`xy_indices_and_rois` reorders every RoI to (index, y1, x1, y2, x2), so "
            "`roi[1]:roi[3]` are feature-map **rows** and `roi[2]:roi[4]` **columns**, which is "
            "how the pooling loop slices. The visualisation cell slices the other way round: rows "
            "from the x range and columns from the y range, the region mirrored across the "
            "diagonal. The pooled features are right; only the pictures show the wrong place."
        ),
        N_("a plain slice of this image's feature map"),
    ),
    Bug(
        "B10",
        N_("RoI pooling"),
        N_("`AdaptiveMaxPool2d(7, 7)` passes 7 as `return_indices`"),
        N_("works by accident through `tmp[0]`"),
        """size = (7, 7)
adaptive_max_pool = nn.AdaptiveMaxPool2d(size[0], size[1])
...
    tmp = adaptive_max_pool(im)
    output.append(tmp[0])""",
        N_("transcript lines 1664-1678"),
        """adaptive_max_pool = nn.AdaptiveMaxPool2d(size)   # output_size = (7, 7)
...
    tmp = adaptive_max_pool(im)                    # [1, 512, 7, 7]
    output.append(tmp)""",
        N_(
            "The signature is `AdaptiveMaxPool2d(output_size, return_indices=False)`: the second "
            "argument is not the width. `AdaptiveMaxPool2d(7, 7)` means a 7 × 7 output (one int is "
            "a square) with `return_indices=7`, which is truthy, so the layer returns a tuple "
            "(values, indices). `tmp[0]` then happens to pick the values, and the result is right "
            "by accident. Fixing only the constructor would break the loop: `tmp[0]` of a tensor "
            "drops the batch axis and `torch.cat` would stack 128 × 512 maps."
        ),
        N_("plain torch on this image's feature map"),
    ),
    Bug(
        "B11",
        N_("Fast R-CNN head"),
        N_("Linear -> Linear with no ReLU"),
        N_("the two layers collapse into one"),
        """roi_head_classifier = nn.Sequential(*[nn.Linear(25088, 4096), nn.Linear(4096, 4096)]).to(DEVICE)""",  # noqa: E501
        N_("transcript line 1739"),
        """roi_head_classifier = nn.Sequential(
    nn.Linear(25088, 4096), nn.ReLU(inplace=True),
    nn.Linear(4096, 4096), nn.ReLU(inplace=True),
).to(DEVICE)""",
        N_(
            "Two linear layers in a row are one linear layer: W2·(W1·x + b1) + b2 = (W2·W1)·x + "
            "(W2·b1 + b2). The 120 million parameters of fc6 and fc7 can learn nothing that a "
            "single 25088 → 4096 layer could not, and the whole head becomes a linear function of "
            "the pooled features. VGG16's own classifier, and the paper, put a ReLU after each."
        ),
        "HeadParams(bug_b11_no_relu=True)",
    ),
    Bug(
        "B12",
        N_("head loss"),
        N_("RoI loc loss never reduced"),
        N_("`roi_loss` and `total_loss` are matrices; `.backward()` fails"),
        """x = torch.abs(mask_loc_targets - mask_loc_preds)
roi_loc_loss = ((x < 1).float() * 0.5 * x ** 2) + ((x >= 1).float() * (x - 0.5))
print(roi_loc_loss.sum())
...
roi_lambda = 10.
roi_loss = roi_cls_loss + (roi_lambda * roi_loc_loss)
print(rois_loss)
total_loss = rpn_loss + roi_loss
print(total_loss)""",
        N_("transcript lines 1871-1895"),
        """N_reg = (gt_roi_label > 0).float().sum()
roi_loc_loss = roi_loc_loss.sum() / N_reg
roi_loss = roi_cls_loss + (roi_lambda * roi_loc_loss)
total_loss = rpn_loss + roi_loss""",
        N_(
            "`roi_loc_loss` is the smooth-L1 of every coordinate of every positive RoI, a "
            "(#positives × 4) matrix. The cell prints its `.sum()` but never keeps it, so "
            "`roi_loss` is a scalar plus a matrix, and `total_loss` a matrix too (the tutorial's "
            "printout shows it). `total_loss.backward()` needs a scalar and fails. The RPN branch "
            "does it right: sum, then divide by the number of positives."
        ),
        "HeadParams(bug_b12_unreduced=True)",
    ),
    Bug(
        "B13",
        N_("preprocessing"),
        N_("no ImageNet normalisation before a pretrained VGG16"),
        N_("features off the distribution the weights were trained on"),
        """transform = transforms.Compose([transforms.ToTensor()])
imgTensor = transform(img).to(DEVICE)""",
        N_("transcript lines 287-288"),
        """transform = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
imgTensor = transform(img).to(DEVICE)""",
        N_(
            "The pretrained VGG16 learned its filters on images normalised with ImageNet's "
            "per-channel mean and standard deviation: values of mean about 0 and spread about 1. "
            "`ToTensor()` alone gives values in 0 … 1 with a mean near 0.45 and a spread near "
            "0.25, so every first-layer response is shifted and shrunk compared with what the "
            "weights expect, and the difference compounds through 13 conv layers. Nothing fails; "
            "the features are just worse."
        ),
        "BackboneParams(normalize=False)",
    ),
)
BUGS_BY_ID: dict[str, Bug] = {b.id: b for b in BUGS}

# The setting of each bug that frcnn_core can run, and the value that reproduces the bug.
BUG_FLAGS: dict[str, tuple[str, bool]] = {
    "B1": ("anchors.bug_b1_x_outer", True),
    "B2": ("anchor_targets.bug_b2_negatives_last", True),
    "B3": ("anchor_targets.bug_b3_neg_count", True),
    "B4": ("anchor_targets.bug_b4_float_npos", True),
    "B5": ("anchor_targets.bug_b5_width_assign", True),
    "B6": ("rpn.bug_b6_no_relu", True),
    "B7": ("proposals.bug_b7_logit_rank", True),
    "B8": ("proposals.bug_b8_index_order", True),
    "B11": ("head.bug_b11_no_relu", True),
    "B12": ("head_loss.bug_b12_unreduced", True),
    "B13": ("backbone.normalize", False),
}


# The overview table's headers (English; shown translated).
SUMMARY_COLUMNS = (N_("id"), N_("where"), N_("bug"), N_("effect"), N_("run here"))


def with_bug(params: PipelineParams, bug_id: str, on: bool) -> PipelineParams:
    """``params`` with bug ``bug_id`` switched on (the tutorial's variant) or off (the fix);
    every other setting as given. A new object: ``params`` is not modified."""
    path, buggy = BUG_FLAGS[bug_id]
    value = buggy if on else not buggy
    return params if params.get(path) == value else params.replace(path, value)


def summary_rows() -> list[dict[str, str]]:
    """One row per bug for the overview table, in the caller's language: the headers are
    :data:`SUMMARY_COLUMNS` translated (the page's ``column_config`` translates them the same
    way), the ids as they are."""
    id_, where, bug, effect, run_here = (_(c) for c in SUMMARY_COLUMNS)
    return [
        {
            id_: b.id,
            where: _(b.where),
            bug: _(b.bug).replace("`", ""),
            effect: _(b.effect).replace("`", ""),
            run_here: _("yes (switch)") if b.id in BUG_FLAGS else _("yes (torch)"),
        }
        for b in BUGS
    ]
