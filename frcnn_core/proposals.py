"""Stage 9: the proposal layer, from 22500 scored anchors to at most 2000 region proposals.

    decode -> clip to image -> drop boxes under min_size -> top pre_nms_n by object probability
    -> NMS -> top post_nms_n

The pre- and post-NMS counts are an explicit argument (:class:`ProposalCounts`): 12000 / 2000
when training, 6000 / 300 at test time. The rest of the layer's rules are the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from frcnn_core.boxes import SCALE_CLAMP, decode, nms_in_order, nms_suppressors


@dataclass(frozen=True)
class ProposalParams:
    """The proposal layer's rules, the same at training and at test time.

    ``bug_b7_logit_rank`` ranks by the raw object logit instead of the softmax probability;
    ``bug_b8_index_order`` makes NMS visit boxes by descending anchor index instead of score,
    as the tutorial's ``order = order.argsort()[::-1]`` did.
    """

    nms_iou: float = 0.7
    min_size: float = 16.0
    scale_clamp: float = SCALE_CLAMP
    bug_b7_logit_rank: bool = False
    bug_b8_index_order: bool = False


@dataclass(frozen=True)
class ProposalCounts:
    """How many boxes enter NMS (``pre_nms``) and how many of its survivors are kept
    (``post_nms``): 12000 / 2000 for training (the default), 6000 / 300 at test time
    (:data:`TEST_COUNTS`)."""

    pre_nms: int = 12000
    post_nms: int = 2000


TEST_COUNTS = ProposalCounts(pre_nms=6000, post_nms=300)


@dataclass(frozen=True)
class ProposalResult:
    """Every intermediate of the proposal layer. Index tensors are int64.

    Attributes:
        decoded (Tensor[N, 4]): every anchor moved by its predicted deltas.
        clipped (Tensor[N, 4]): the same clipped to the image.
        size_keep (Tensor[M]): indices of boxes at least ``min_size`` wide and tall.
        pre_nms_index (Tensor[P]): the top ``pre_nms_n`` of ``size_keep`` by score, best first.
        nms_keep (Tensor[Q]): positions in ``pre_nms_index`` that NMS kept, in visiting order.
        keep_index (Tensor[R]): anchor indices of the final proposals (R <= post_nms_n).
        rois (Tensor[R, 4]): the proposals, float32.
        scores (Tensor[R]): their ranking scores.
        rank_scores (Tensor[N]): the score every anchor was ranked by.
        pre_nms_n, post_nms_n: the counts used.
    """

    decoded: torch.Tensor
    clipped: torch.Tensor
    size_keep: torch.Tensor
    pre_nms_index: torch.Tensor
    nms_keep: torch.Tensor
    keep_index: torch.Tensor
    rois: torch.Tensor
    scores: torch.Tensor
    rank_scores: torch.Tensor
    pre_nms_n: int
    post_nms_n: int

    def counts(self) -> dict[str, int]:
        return {
            "decoded": int(self.decoded.shape[0]),
            "after_min_size": int(self.size_keep.numel()),
            "pre_nms": int(self.pre_nms_index.numel()),
            "after_nms": int(self.nms_keep.numel()),
            "kept": int(self.keep_index.numel()),
        }


def propose(
    anchors: torch.Tensor,
    locs: torch.Tensor,
    scores: torch.Tensor,
    image_size: tuple[int, int],
    params: ProposalParams,
    counts: ProposalCounts,
) -> ProposalResult:
    """Stage 9 on one image.

    Args:
        anchors (Tensor[N, 4]): every anchor (not only the inside ones), (x1, y1, x2, y2).
        locs (Tensor[N, 4]): RPN deltas.
        scores (Tensor[N, 2]): RPN (background, object) logits.
        image_size: (H, W) of the input frame.
        counts: the pre- and post-NMS counts (training or test time).
    """
    locs = locs.detach().float()
    scores = scores.detach().float()
    anchors = anchors.to(locs.device, torch.float32)
    pre_n, post_n = counts.pre_nms, counts.post_nms
    decoded = decode(anchors, locs, params.scale_clamp)  # [N, 4]
    clipped = clip_boxes_to_image(decoded, image_size)
    if params.bug_b7_logit_rank:
        rank_scores = scores[:, 1]
    else:
        rank_scores = torch.softmax(scores, dim=1)[:, 1]
    size_keep = remove_small_boxes(clipped, params.min_size)  # [M]
    order = torch.argsort(rank_scores[size_keep], descending=True, stable=True)[:pre_n]
    pre_nms_index = size_keep[order]  # [P]
    boxes = clipped[pre_nms_index]
    if params.bug_b8_index_order:
        # The tutorial's NMS visited boxes by descending anchor index: priority = index.
        nms_keep = nms_in_order(boxes, pre_nms_index.float(), params.nms_iou)
    else:
        nms_keep = nms_in_order(boxes, rank_scores[pre_nms_index], params.nms_iou)
    keep_index = pre_nms_index[nms_keep[:post_n]]
    return ProposalResult(
        decoded=decoded,
        clipped=clipped,
        size_keep=size_keep,
        pre_nms_index=pre_nms_index,
        nms_keep=nms_keep,
        keep_index=keep_index,
        rois=clipped[keep_index],
        scores=rank_scores[keep_index],
        rank_scores=rank_scores,
        pre_nms_n=pre_n,
        post_nms_n=post_n,
    )


# The steps that can remove a box, in the order the layer applies them.
REMOVING_STEPS = ("min size", "pre-NMS top-N", "NMS", "post-NMS top-N")


@dataclass(frozen=True)
class BoxFate:
    """What the proposal layer did with the box of one anchor.

    Attributes:
        anchor: the anchor's index n (also the box's row in ``decoded`` and ``clipped``).
        score: the score the box was ranked by.
        removed_at: the step of :data:`REMOVING_STEPS` that removed it, or "" for a proposal.
        pre_nms_rank: its place in the pre-NMS list (0 = best score), -1 when not in it.
        suppressor: anchor index of the kept box that removed it in NMS, -1 unless
            ``removed_at == "NMS"`` (and -1 in the rare case that no box overlaps it by more
            than the threshold in float32 arithmetic, i.e. an IoU at the threshold).
        suppressor_iou: the IoU of the two clipped boxes (0 when there is no suppressor).
        proposal: its index among the proposals (``rois``), -1 when removed.
    """

    anchor: int
    score: float
    removed_at: str
    pre_nms_rank: int
    suppressor: int
    suppressor_iou: float
    proposal: int


def _position(index: torch.Tensor, value: int) -> int:
    """Where ``value`` sits in the 1-D ``index``, or -1."""
    hit = torch.nonzero(index == value).flatten()
    return int(hit[0]) if hit.numel() else -1


def box_fate(result: ProposalResult, params: ProposalParams, anchor: int) -> BoxFate:
    """Follow one anchor's box through the proposal layer (see :func:`propose`).

    Args:
        result: the layer's output.
        params: the rules it ran with (the NMS threshold and visiting order).
        anchor: an anchor index in ``[0, N)``.
    """
    n = result.rank_scores.shape[0]
    if not 0 <= anchor < n:
        raise ValueError(f"anchor {anchor} is not in 0..{n - 1}")
    score = float(result.rank_scores[anchor])
    pre = result.pre_nms_index
    rank = _position(pre, anchor)

    def fate(step: str, suppressor: int = -1, iou: float = 0.0, proposal: int = -1) -> BoxFate:
        return BoxFate(anchor, score, step, rank, suppressor, iou, proposal)

    if _position(result.size_keep, anchor) < 0:
        return fate("min size")
    if rank < 0:
        return fate("pre-NMS top-N")
    survivor = _position(result.nms_keep, rank)
    if survivor >= 0:
        return (
            fate("post-NMS top-N") if survivor >= result.post_nms_n else fate("", proposal=survivor)
        )
    priority = pre.float() if params.bug_b8_index_order else result.rank_scores[pre]
    by, iou = nms_suppressors(
        result.clipped[pre],
        priority,
        result.nms_keep,
        params.nms_iou,
        torch.tensor([rank], device=pre.device),
    )
    by_rank = int(by[0])
    return fate("NMS", int(pre[by_rank]) if by_rank >= 0 else -1, float(iou[0]))
