"""Box conventions and the box coder shared by every stage.

Conventions (SPEC section 1), stated once here and relied on everywhere:

- A box is ``(x1, y1, x2, y2)`` in pixels of the **input frame** (the resized image), ``x1 < x2``.
- Box deltas are ``(dx, dy, dw, dh)`` on centres and sizes::

      dx = (gx - ax) / aw    dy = (gy - ay) / ah    dw = log(gw / aw)    dh = log(gh / ah)

  where ``a`` is the reference box (anchor or RoI) and ``g`` the target box.
- IoU never uses the "+1 pixel" convention (``torchvision.ops.box_iou`` does not either).

Shape letters: N boxes, M reference boxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchvision.ops import box_iou, nms

# Widest growth a predicted dw / dh may apply: exp(SCALE_CLAMP) = 1000 / 16, so one 16-pixel
# cell can at most grow into a 1000-pixel box. Without it, exp() of an untrained head's output
# can overflow to inf.
SCALE_CLAMP = math.log(1000.0 / 16)


def box_centres_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Split boxes into centres and sizes.

    Args:
        boxes (Tensor[N, 4]): in (x1, y1, x2, y2) format.

    Returns:
        (cx, cy, w, h), each Tensor[N].
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode(reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Regression targets that move ``reference`` boxes onto ``target`` boxes.

    Args:
        reference (Tensor[N, 4]): anchors or RoIs, (x1, y1, x2, y2).
        target (Tensor[N, 4]): the matched ground-truth boxes, (x1, y1, x2, y2).

    Returns:
        Tensor[N, 4]: (dx, dy, dw, dh), in the dtype of the inputs.
    """
    ax, ay, aw, ah = box_centres_sizes(reference)
    gx, gy, gw, gh = box_centres_sizes(target)
    # A degenerate reference box would divide by zero; eps keeps the targets finite.
    eps = torch.finfo(reference.dtype).eps
    aw = aw.clamp(min=eps)
    ah = ah.clamp(min=eps)
    gw = gw.clamp(min=eps)
    gh = gh.clamp(min=eps)
    return torch.stack(
        ((gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)), dim=1
    )


def decode(
    reference: torch.Tensor, deltas: torch.Tensor, scale_clamp: float = SCALE_CLAMP
) -> torch.Tensor:
    """Apply predicted deltas to reference boxes: the inverse of :func:`encode`.

    Args:
        reference (Tensor[N, 4]): anchors or RoIs, (x1, y1, x2, y2).
        deltas (Tensor[N, 4]): (dx, dy, dw, dh).
        scale_clamp: upper bound on dw and dh before exp().

    Returns:
        Tensor[N, 4]: decoded boxes, (x1, y1, x2, y2).
    """
    ax, ay, aw, ah = box_centres_sizes(reference)
    dx, dy, dw, dh = deltas.to(reference.dtype).unbind(dim=1)
    dw = dw.clamp(max=scale_clamp)
    dh = dh.clamp(max=scale_clamp)
    cx = dx * aw + ax
    cy = dy * ah + ay
    w = torch.exp(dw) * aw
    h = torch.exp(dh) * ah
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=1)


def smooth_l1_sum(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Sum of smooth-L1 (Huber) over all elements: ``0.5 x^2 / beta`` if ``|x| < beta``, else
    ``|x| - 0.5 beta``. Returns a 0-d tensor (0 when the inputs are empty)."""
    return torch.nn.functional.smooth_l1_loss(
        pred, target.to(pred.dtype), beta=beta, reduction="sum"
    )


# Boxes per block of the blocked NMS below: large enough that the per-block bookkeeping is
# cheap, small enough that the block's own torchvision NMS stays short.
NMS_BLOCK = 2048
# Box pairs per IoU test. ``box_iou`` builds [K, M, 2] tensors and torch splits an op across
# threads from 32768 elements (its grain size): staying under it keeps every op of the NMS on
# the calling thread. On a busy server, waiting for a second thread at every small op costs
# far more than it saves (measured: 0.4 s instead of 0.06 s on a loaded 2-core machine).
NMS_PAIRS = 16384
# Under this IoU threshold few boxes survive, and torchvision's NMS is already quick.
NMS_BLOCKED_FROM = 0.5


def _blocked_nms_allowed() -> bool:
    return True


# Asked before each blocked NMS; False runs ``torchvision.ops.nms`` in one call instead (the same
# result). The blocked NMS makes hundreds of small torch calls, and torch gives the interpreter
# lock away around each: where other threads of the process run Python meanwhile (a server's
# other sessions), each call waits for the lock to come back, and the whole takes seconds where
# one call takes a fraction of one. The app's server sets it (``explorer.runtime``).
blocked_nms_allowed: Callable[[], bool] = _blocked_nms_allowed


def nms_in_order(
    boxes: torch.Tensor, priority: torch.Tensor, iou_threshold: float, block: int = NMS_BLOCK
) -> torch.Tensor:
    """Greedy non-maximum suppression that visits boxes by descending ``priority`` (ties in the
    order of the input) and returns what ``torchvision.ops.nms`` would: the kept indices, best
    first. Same IoU arithmetic (``box_iou``), same ``iou > iou_threshold`` test.

    ``torchvision.ops.nms`` on CPU compares each kept box with every later box, one pair at a
    time. The proposal layer keeps about 2000 of 12000 boxes at IoU 0.7, so this visits the
    boxes in blocks instead, which is about twice as fast there and gives the same keep set:

    1. every box of the block is tested against the boxes already kept from earlier blocks,
       many pairs per ``box_iou`` call, and dropped when one overlaps it by more than the
       threshold;
    2. ``torchvision.ops.nms`` runs on the block's survivors, in the same order.

    Step 1 only compares boxes whose areas are within a factor ``1 / iou_threshold`` of each
    other, because ``IoU(a, b) <= min(area) / max(area)``: a box 4x the area of another can
    never suppress it at IoU 0.7.

    Args:
        boxes (Tensor[N, 4]): in (x1, y1, x2, y2) format.
        priority (Tensor[N]): visiting order, highest first (the score, or any ranking).
        iou_threshold: boxes overlapping a kept box by IoU above this are discarded.
        block: boxes per block.

    Returns:
        Tensor[K]: int64 indices into ``boxes`` of the kept boxes, in visiting order.
    """
    n = boxes.shape[0]
    order = torch.argsort(priority, descending=True, stable=True)
    # Unique float ranks make torchvision's own (unstable) sort follow ``order`` exactly.
    rank = torch.arange(n, 0, -1, dtype=torch.float32, device=boxes.device)
    ordered = boxes[order]
    # CUDA's kernel already tests all pairs in parallel; small inputs gain nothing from blocks.
    if (
        boxes.is_cuda
        or n <= block
        or not NMS_BLOCKED_FROM <= iou_threshold < 1.0
        or not blocked_nms_allowed()
    ):
        return order[nms(ordered, rank, iou_threshold)]
    area = (ordered[:, 2] - ordered[:, 0]) * (ordered[:, 3] - ordered[:, 1])
    # Area bins a factor (1 / threshold) wide, widened by 0.1% against rounding: a box can
    # only be suppressed by kept boxes in its own bin or a neighbouring one.
    bin_width = -math.log(iou_threshold) * 1.001
    bins = torch.floor(torch.log(area.clamp(min=1e-12)) / bin_width).long()  # [N]
    kept_by_bin: dict[int, torch.Tensor] = {}
    keep: list[torch.Tensor] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        candidates = ordered[start:stop]
        candidate_bins = bins[start:stop]
        alive = torch.ones(stop - start, dtype=torch.bool, device=boxes.device)
        for b in torch.unique(candidate_bins).tolist():
            near = [kept_by_bin[k] for k in (b - 1, b, b + 1) if k in kept_by_bin]
            if not near:
                continue
            kept_boxes = ordered[torch.cat(near)]
            members = torch.nonzero(candidate_bins == b).flatten()
            for part in members.split(max(1, NMS_PAIRS // kept_boxes.shape[0])):
                iou = box_iou(kept_boxes, candidates[part])  # [kept, part]
                alive[part[(iou > iou_threshold).any(dim=0)]] = False
        survivors = torch.nonzero(alive).flatten()
        if survivors.numel() == 0:
            continue
        survivor_keep = nms(candidates[survivors], rank[start:stop][survivors], iou_threshold)
        kept = start + survivors[survivor_keep]
        keep.append(kept)
        kept_bins = bins[kept]
        for b in torch.unique(kept_bins).tolist():
            new = kept[kept_bins == b]
            old = kept_by_bin.get(b)
            kept_by_bin[b] = new if old is None else torch.cat((old, new))
    if not keep:
        return order[:0]
    return order[torch.cat(keep)]


def nms_suppressors(
    boxes: torch.Tensor,
    priority: torch.Tensor,
    keep: torch.Tensor,
    iou_threshold: float,
    query: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which kept box removed each queried box in greedy NMS, and their IoU.

    Greedy NMS visits boxes by descending ``priority`` and drops a box as soon as one box kept
    before it overlaps it by IoU > ``iou_threshold``; the first such kept box (in visiting
    order) is its suppressor. A kept box that comes *later* in the visiting order may overlap
    it too, but it cannot have removed it, so only earlier ones count.

    Args:
        boxes (Tensor[N, 4]): the boxes NMS ran on, (x1, y1, x2, y2).
        priority (Tensor[N]): the visiting order NMS used, highest first (ties in input order,
            as in :func:`nms_in_order`).
        keep (Tensor[K]): int64 indices into ``boxes`` that NMS kept.
        iou_threshold: the NMS threshold.
        query (Tensor[Q]): int64 indices into ``boxes`` to explain.

    Returns:
        suppressor (Tensor[Q]): int64 index into ``boxes`` of the kept box that removed each
        queried box; -1 for a box NMS kept.
        iou (Tensor[Q]): float32 IoU of each queried box with its suppressor (0 where -1).
    """
    n, q = boxes.shape[0], query.numel()
    device = boxes.device
    query = query.to(device)
    keep = keep.to(device)
    if q == 0 or keep.numel() == 0:
        return (
            torch.full((q,), -1, dtype=torch.int64, device=device),
            torch.zeros(q, dtype=torch.float32, device=device),
        )
    order = torch.argsort(priority.to(device), descending=True, stable=True)
    visit = torch.empty(n, dtype=torch.int64, device=device)
    visit[order] = torch.arange(n, device=device)  # visiting position of every box
    kept = torch.zeros(n, dtype=torch.bool, device=device)
    kept[keep] = True
    iou = box_iou(boxes[query], boxes[keep]).float()  # [Q, K]
    earlier = visit[keep][None, :] < visit[query][:, None]
    hit = (iou > iou_threshold) & earlier & ~kept[query][:, None]
    # The earliest-visited hit: a visiting position, or n where there is none.
    position = torch.where(hit, visit[keep][None, :], torch.full_like(iou, n, dtype=torch.int64))
    first = position.argmin(dim=1)  # [Q]
    found = hit.any(dim=1)
    suppressor = torch.where(found, keep[first], torch.full_like(first, -1))
    overlap = torch.where(
        found, iou.gather(1, first[:, None]).squeeze(1), torch.zeros_like(iou[:, 0])
    )
    return suppressor, overlap
