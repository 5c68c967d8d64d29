"""Still pictures of each stage as RGB arrays (OpenCV drawing, text by
:mod:`frcnn_core.fonts`), for slides and the CLI.

Their text is in the caller's language (:mod:`frcnn_core.i18n`). Colours: ground truth
yellow, positive green, negative red, proposals cyan, NMS-removed grey.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from frcnn_core import fonts
from frcnn_core.graph import Run
from frcnn_core.i18n import _, ngettext

GT = (255, 215, 0)
POSITIVE = (40, 200, 60)
NEGATIVE = (230, 50, 50)
PROPOSAL = (0, 200, 230)
MUTED = (150, 150, 150)
WHITE = (255, 255, 255)
OUTLINE = (20, 20, 20)
# Font sizes (pixels) that keep the text as large as the OpenCV Hershey text these pictures
# had (about 28 per unit of cv2's font scale: titles 0.65, tiles 0.5; labels a little larger).
TITLE_SIZE = 18
LABEL_SIZE = 22
TILE_SIZE = 14
TITLE_LINE = 24


def _boxes(
    image: np.ndarray, boxes: torch.Tensor, colour: tuple[int, int, int], width: int = 1
) -> np.ndarray:
    for x1, y1, x2, y2 in boxes.detach().cpu().round().int().tolist():
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, width, lineType=cv2.LINE_AA)
    return image


def _title(image: np.ndarray, text: str) -> np.ndarray:
    """A black band on top with white text (smaller, or on more lines, on a narrow image)."""
    lines, size = fonts.fit(text, image.shape[1] - 16, TITLE_SIZE, bold=True)
    band = np.zeros((12 + TITLE_LINE * len(lines), image.shape[1], 3), dtype=np.uint8)
    for k, line in enumerate(lines):
        fonts.put_text(band, line, (8, 18 + TITLE_LINE * k), size, WHITE, bold=True, anchor="lm")
    return np.vstack([band, image])


def _dimmed(pixels: np.ndarray, factor: float = 0.55) -> np.ndarray:
    return (pixels.astype(np.float32) * factor).astype(np.uint8)


def gt_boxes(result: Run) -> np.ndarray:
    img = result.image.pixels.copy()
    labels = result.ground_truth.labels
    for (x1, y1, x2, y2), label in zip(
        result.ground_truth.boxes.int().tolist(), labels, strict=True
    ):
        cv2.rectangle(img, (x1, y1), (x2, y2), GT, 3, cv2.LINE_AA)
        fonts.put_text(
            img, label, (x1 + 4, max(y1 - 6, 16)), LABEL_SIZE, GT, bold=True, outline=OUTLINE
        )
    h, w = result.image.size
    n = len(labels)
    return _title(
        img,
        ngettext(
            "1. input {w} x {h} with {n} ground-truth box",
            "1. input {w} x {h} with {n} ground-truth boxes",
            n,
        ).format(w=w, h=h, n=n),
    )


def feature_grid(features: torch.Tensor, channels: list[int], cell: int = 150) -> np.ndarray:
    """Channels of a [1, C, Hf, Wf] feature map as a grid of viridis tiles, each min-max scaled."""
    fmap = features[0].detach().float().cpu()
    cols = 4
    rows = (len(channels) + cols - 1) // cols
    grid = np.zeros((rows * (cell + 22), cols * cell, 3), dtype=np.uint8)
    for k, c in enumerate(channels):
        x = fmap[c]
        x = ((x - x.min()) / (x.max() - x.min() + 1e-12) * 255).to(torch.uint8).numpy()
        tile = cv2.applyColorMap(
            cv2.resize(x, (cell, cell), interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_VIRIDIS
        )
        tile = cv2.cvtColor(tile, cv2.COLOR_BGR2RGB)
        r, q = divmod(k, cols)
        y0 = r * (cell + 22)
        grid[y0 + 22 : y0 + 22 + cell, q * cell : (q + 1) * cell] = tile
        fonts.put_text(
            grid, _("ch {c}").format(c=c), (q * cell + 4, y0 + 11), TILE_SIZE, WHITE, anchor="lm"
        )
    return grid


def most_active_channels(features: torch.Tensor, k: int = 16) -> list[int]:
    """The ``k`` channels with the highest mean activation."""
    means = features[0].detach().float().mean(dim=(1, 2))
    return [int(c) for c in torch.argsort(means, descending=True)[:k]]


def features(result: Run) -> np.ndarray:
    fmap = result.backbone.features
    c, hf, wf = fmap.shape[1:]
    channels = most_active_channels(fmap)
    grid = feature_grid(fmap, channels)
    return _title(
        grid,
        _("2. backbone: {c} x {hf} x {wf}, {k} most active channels").format(
            c=c, hf=hf, wf=wf, k=len(channels)
        ),
    )


def anchor_centres(result: Run) -> np.ndarray:
    img = _dimmed(result.image.pixels)
    for x, y in result.anchors.centres.round().int().tolist():
        cv2.circle(img, (x, y), 2, PROPOSAL, -1)
    hf, wf = result.anchors.feature_size
    stride = result.anchors.stride
    return _title(
        img,
        _("3. {hf} x {wf} = {n} anchor centres (stride {stride})").format(
            hf=hf, wf=wf, n=hf * wf, stride=stride
        ),
    )


def anchors_at(result: Run, cell: tuple[int, int] | None = None) -> np.ndarray:
    """The A anchors of one cell (default: the middle one) on a canvas padded so all show."""
    hf, wf = result.anchors.feature_size
    iy, ix = cell if cell is not None else (hf // 2, wf // 2)
    a = result.anchors.base_anchors.shape[0]
    start = (iy * wf + ix) * a
    boxes = result.anchors.anchors[start : start + a]
    pad = (
        int(max(0.0, float(-boxes.min()), float(boxes[:, 2:].max() - max(result.image.size)))) + 20
    )
    img = cv2.copyMakeBorder(
        result.image.pixels, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=WHITE
    )
    colours = [(230, 50, 50), (40, 160, 60), (40, 90, 230)]
    for k, box in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (round(v) + pad for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colours[k * len(colours) // a], 2, cv2.LINE_AA)
    return _title(
        img,
        _("4. the {a} anchors of cell (y={iy}, x={ix}); colour = ratio").format(a=a, iy=iy, ix=ix),
    )


def labelled_anchors(result: Run) -> np.ndarray:
    t = result.anchor_targets
    inside = result.anchors.inside_anchors
    img = _dimmed(result.image.pixels)
    _boxes(img, inside[t.labels == 0], NEGATIVE)
    _boxes(img, inside[t.labels == 1], POSITIVE, 2)
    _boxes(img, result.ground_truth.boxes, GT, 2)
    c = t.counts()
    return _title(
        img,
        _(
            "5-6. labels: {pos} pos / {neg} neg / {ign} ign; sampled {sampled_pos} + {sampled_neg}"
        ).format(
            pos=c["positive"],
            neg=c["negative"],
            ign=c["ignored"],
            sampled_pos=c["sampled_positive"],
            sampled_neg=c["sampled_negative"],
        ),
    )


def proposals(result: Run, after_nms: bool, show: int = 300) -> np.ndarray:
    p = result.proposals
    img = _dimmed(result.image.pixels)
    if after_nms:
        _boxes(img, p.rois[:show], PROPOSAL)
        text = _("7. after NMS {n}, kept {kept} (top {show} drawn)").format(
            n=p.nms_keep.numel(), kept=p.keep_index.numel(), show=show
        )
    else:
        _boxes(img, p.clipped[p.pre_nms_index[:show]], PROPOSAL)
        text = _("6. before NMS: top {n} by score (top {show} drawn)").format(
            n=p.pre_nms_index.numel(), show=show
        )
    _boxes(img, result.ground_truth.boxes, GT, 2)
    return _title(img, text)


def sampled_rois(result: Run) -> np.ndarray:
    t = result.proposal_targets
    img = _dimmed(result.image.pixels)
    n_pos = t.pos_index.numel()
    _boxes(img, t.rois[n_pos:], NEGATIVE)
    _boxes(img, t.rois[:n_pos], POSITIVE, 2)
    _boxes(img, result.ground_truth.boxes, GT, 2)
    return _title(
        img,
        _("8. sampled RoIs: {pos} positive, {neg} negative").format(
            pos=n_pos, neg=t.neg_index.numel()
        ),
    )


def pooled(result: Run, k: int = 8, cell: int = 112) -> np.ndarray:
    """The channel-mean of the 7 x 7 pooled features of the first ``k`` sampled RoIs."""
    x = result.roi_pool.pooled[:k].detach().float().mean(dim=1).cpu()  # [k, 7, 7]
    tiles = []
    for i in range(x.shape[0]):
        v = x[i]
        v = ((v - v.min()) / (v.max() - v.min() + 1e-12) * 255).to(torch.uint8).numpy()
        tile = cv2.applyColorMap(
            cv2.resize(v, (cell, cell), interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_VIRIDIS
        )
        tiles.append(
            cv2.copyMakeBorder(
                cv2.cvtColor(tile, cv2.COLOR_BGR2RGB), 4, 4, 4, 4, cv2.BORDER_CONSTANT
            )
        )
    if not tiles:
        tiles = [np.zeros((cell + 8, cell + 8, 3), np.uint8)]
    s = list(result.roi_pool.pooled.shape)
    return _title(
        np.hstack(tiles),
        _("9. RoI pool {shape}: channel mean, first {n}").format(shape=s, n=len(tiles)),
    )


def all_stages(result: Run) -> dict[str, np.ndarray]:
    """Every picture, keyed by a file stem that sorts in stage order."""
    return {
        "01_gt_boxes": gt_boxes(result),
        "02_features": features(result),
        "03_anchor_centres": anchor_centres(result),
        "04_anchors_at_location": anchors_at(result),
        "05_labelled_anchors": labelled_anchors(result),
        "06_proposals_before_nms": proposals(result, after_nms=False),
        "07_proposals_after_nms": proposals(result, after_nms=True),
        "08_sampled_rois": sampled_rois(result),
        "09_pooled_features": pooled(result),
    }
