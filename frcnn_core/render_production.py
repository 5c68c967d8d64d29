"""Still pictures of each stage of the production detector (:mod:`frcnn_core.production`), as
RGB uint8 arrays drawn with OpenCV (text by :mod:`frcnn_core.fonts`, in the caller's language),
for slides and ``python -m frcnn_core detect --out``.

Everything is drawn in the input frame (the resized image, before padding) except the
detections, which are drawn on the original image, where ``model(images)`` puts them.
Colours: one per FPN level (``LEVEL_COLOURS``), proposals cyan, NMS-removed grey.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from frcnn_core import fonts
from frcnn_core.i18n import _, ngettext
from frcnn_core.production import Detections, StagedRun

PROPOSAL = (0, 200, 230)
MUTED = (150, 150, 150)
WHITE = (255, 255, 255)
DETECTION = (255, 215, 0)
# Level 0 (finest) red ... level 4 ("pool") purple: warm = fine, cool = coarse.
LEVEL_COLOURS = ((230, 60, 50), (240, 160, 30), (60, 190, 80), (40, 140, 230), (150, 80, 220))
PANEL_WIDTH = 480
OUTLINE = (20, 20, 20)
# A font size of 28 pixels per unit of OpenCV's font scale keeps the capitals as tall as the
# Hershey text these pictures had (0.55 for titles, 0.5 for labels).
TITLE_SIZE = 15.5
LABEL_SIZE = 14


def _title(image: np.ndarray, text: str) -> np.ndarray:
    """A black band on top with white text, larger on large images (slides shrink them),
    smaller or on more lines when the image is narrower than the text."""
    k = max(1.0, image.shape[1] / 1000)
    size, line = TITLE_SIZE * k, 21 * k
    lines, size = fonts.fit(text, max(1, image.shape[1] - round(16 * k)), size, bold=True)
    band = np.zeros((round(11 * k + line * len(lines)), image.shape[1], 3), dtype=np.uint8)
    for i, text_line in enumerate(lines):
        fonts.put_text(
            band, text_line, (8 * k, 16 * k + line * i), size, WHITE, bold=True, anchor="lm"
        )
    return np.vstack([band, image])


def _fit(image: np.ndarray, width: int = PANEL_WIDTH) -> np.ndarray:
    h, w = image.shape[:2]
    if w == width:
        return image
    interp = cv2.INTER_AREA if w > width else cv2.INTER_NEAREST
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=interp)


def _stack(panels: list[np.ndarray], cols: int = 2) -> np.ndarray:
    """Panels of equal width in a grid, row by row (rows padded to the tallest panel)."""
    rows = []
    for i in range(0, len(panels), cols):
        row = panels[i : i + cols]
        height = max(p.shape[0] for p in row)
        row = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in row]
        row += [np.zeros_like(row[0])] * (cols - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)


def _boxes(
    image: np.ndarray,
    boxes: torch.Tensor,
    colour: tuple[int, int, int],
    width: int = 1,
    scale: float = 1.0,
) -> np.ndarray:
    for x1, y1, x2, y2 in (boxes.detach().float().cpu() * scale).round().int().tolist():
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, width, lineType=cv2.LINE_AA)
    return image


def input_pixels(run: StagedRun) -> np.ndarray:
    """The input frame as uint8 RGB [Hi, Wi, 3]: ``run.input.tensor`` un-normalised, unpadded."""
    stage = run.input
    hi, wi = stage.input_size
    x = stage.tensor[:, :hi, :wi].detach().float().cpu()
    mean = torch.tensor(stage.image_mean).view(3, 1, 1)
    std = torch.tensor(stage.image_std).view(3, 1, 1)
    x = (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


def _dimmed(pixels: np.ndarray, factor: float = 0.55) -> np.ndarray:
    return (pixels.astype(np.float32) * factor).astype(np.uint8)


def input_frame(run: StagedRun) -> np.ndarray:
    """The resized input inside its zero-padded frame (padding grey)."""
    s = run.input
    hp, wp = s.padded_size
    canvas = np.full((hp, wp, 3), 90, dtype=np.uint8)
    hi, wi = s.input_size
    canvas[:hi, :wi] = input_pixels(run)
    h, w = s.original_size
    return _title(
        canvas,
        _(
            "1. input: {w} x {h} resized x {scale:.3f} to {wi} x {hi} (min {min_size} / max "
            "{max_size}), padded to {wp} x {hp}"
        ).format(
            w=w,
            h=h,
            scale=s.scale,
            wi=wi,
            hi=hi,
            min_size=s.min_size,
            max_size=s.max_size,
            wp=wp,
            hp=hp,
        ),
    )


def _heat(values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A [H, W] map min-max scaled to a viridis image of ``size`` (w, h)."""
    v = values.detach().float().cpu()
    v = ((v - v.min()) / (v.max() - v.min() + 1e-12) * 255).to(torch.uint8).numpy()
    tile = cv2.applyColorMap(cv2.resize(v, size, interpolation=cv2.INTER_NEAREST), 16)
    return cv2.cvtColor(tile, cv2.COLOR_BGR2RGB)


def fpn_levels(run: StagedRun, channels: int = 4, cell: int = 120) -> np.ndarray:
    """Per FPN level, its most active channels as tiles (one row per level)."""
    rows = []
    for name, f in run.backbone.features.items():
        fmap = f[0].detach().float()
        top = torch.argsort(fmap.mean(dim=(1, 2)), descending=True)[:channels].tolist()
        h, w = fmap.shape[1:]
        tile_w = max(1, round(cell * w / h)) if h else cell
        tiles = [
            cv2.copyMakeBorder(_heat(fmap[c], (tile_w, cell)), 2, 2, 2, 2, cv2.BORDER_CONSTANT)
            for c in top
        ]
        label = np.zeros((cell + 4, 150, 3), dtype=np.uint8)
        sy, sx = run.backbone.strides[name]
        if sy == sx:
            stride = _("stride {s}").format(s=sy)
        else:
            stride = _("stride {sy} x {sx}").format(sy=sy, sx=sx)
        texts = (_("level {name}").format(name=name), f"{fmap.shape[0]} x {h} x {w}", stride)
        for k, text in enumerate(texts):
            fonts.put_text(label, text, (6, 24 + 22 * k), LABEL_SIZE, WHITE)
        rows.append(np.hstack([label, *tiles]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return _title(
        np.vstack(rows),
        _("2. backbone + FPN: {k} most active channels per level").format(k=channels),
    )


def anchors(run: StagedRun) -> np.ndarray:
    """Per level: its anchor centres (every one, as dots) and the anchors of the middle cell."""
    base = input_pixels(run)
    panels = []
    for i, (name, boxes) in enumerate(run.anchors.anchors.items()):
        img = _dimmed(base)
        colour = LEVEL_COLOURS[i % len(LEVEL_COLOURS)]
        per_cell = len(run.anchors.sizes[name]) * len(run.anchors.aspect_ratios[name])
        hl, wl = run.rpn.objectness[name].shape[1:]
        centres = ((boxes[::per_cell, :2] + boxes[::per_cell, 2:]) / 2).cpu().round().int()
        for x, y in centres.tolist():
            cv2.circle(img, (x, y), 1, colour, -1)
        middle = ((hl // 2) * wl + wl // 2) * per_cell
        pad = 4 + int(max(0.0, float(-boxes[middle : middle + per_cell].min())))
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(40, 40, 40))
        for box in boxes[middle : middle + per_cell].cpu().round().int().tolist():
            x1, y1, x2, y2 = (v + pad for v in box)
            cv2.rectangle(img, (x1, y1), (x2, y2), WHITE, 2, cv2.LINE_AA)
        sizes = ",".join(str(s) for s in run.anchors.sizes[name])
        panels.append(
            _title(
                _fit(img),
                _("level {name}: {hl} x {wl} x {per_cell} = {n} (size {sizes})").format(
                    name=name, hl=hl, wl=wl, per_cell=per_cell, n=boxes.shape[0], sizes=sizes
                ),
            )
        )
    return _title(_stack(panels), _("3. anchors: {n} in all").format(n=run.anchors.total))


def objectness(run: StagedRun) -> np.ndarray:
    """Per level: the highest anchor objectness (sigmoid) at each location, over the image."""
    base = input_pixels(run)
    hi, wi = run.input.input_size
    hp, wp = run.input.padded_size
    panels = []
    for name, logits in run.rpn.objectness.items():
        prob = torch.sigmoid(logits.detach().float()).amax(dim=0)  # [H_l, W_l]
        heat = _heat(prob, (wp, hp))[:hi, :wi]
        blend = cv2.addWeighted(base, 0.4, heat, 0.6, 0)
        panels.append(
            _title(
                _fit(blend),
                _("level {name}: max sigmoid {high:.2f}, min {low:.2f}").format(
                    name=name, high=float(prob.max()), low=float(prob.min())
                ),
            )
        )
    return _title(_stack(panels), _("4. RPN objectness per level (highest over the anchors)"))


def proposals(run: StagedRun, show: int = 300) -> np.ndarray:
    """Before NMS (NMS survivors cyan, removed grey) and the final proposals, by level."""
    p = run.proposals
    base = _dimmed(input_pixels(run))
    before = base.copy()
    order = torch.argsort(p.candidate_scores, descending=True)[:show]
    removed = order[~p.kept[order]]
    kept = order[p.kept[order]]
    _boxes(before, p.candidates[removed], MUTED)
    _boxes(before, p.candidates[kept], PROPOSAL)
    after = base.copy()
    _boxes(after, p.boxes[:show], PROPOSAL)
    funnel = " | ".join(f"{n}: {c['after_score']}->{c['final']}" for n, c in p.funnel.items())
    return _title(
        np.hstack(
            [
                _title(
                    _fit(before),
                    _("before NMS: {n} (top {show} drawn)").format(n=p.pre_nms, show=show),
                ),
                _title(
                    _fit(after),
                    _("after NMS + top-n: {n} (top {show} drawn)").format(n=p.post_nms, show=show),
                ),
            ]
        ),
        _("5. proposals per level: {funnel}").format(funnel=funnel),
    )


def roi_levels(run: StagedRun, show: int = 300) -> np.ndarray:
    """The RoIs coloured by the FPN level MultiScaleRoIAlign pools them from."""
    img = _dimmed(input_pixels(run))
    roi = run.roi
    boxes = run.proposals.boxes[:show]
    levels = roi.levels[:show]
    for i in range(len(roi.level_names)):
        _boxes(img, boxes[levels == i], LEVEL_COLOURS[i % len(LEVEL_COLOURS)])
    counts = ", ".join(f"{n}: {c}" for n, c in roi.counts().items())
    return _title(
        img,
        _(
            "6. RoI levels k = floor({k0} + log2(sqrt(wh) / {scale})), clamped "
            "{k_min}..{k_max}: {counts}"
        ).format(
            k0=roi.canonical_level,
            scale=roi.canonical_scale,
            k_min=roi.k_min,
            k_max=roi.k_max,
            counts=counts,
        ),
    )


def detections(
    run: StagedRun,
    found: Detections,
    class_names: tuple[str, ...],
    original: np.ndarray | None = None,
) -> np.ndarray:
    """The detections on the original image (or on the input frame scaled back up)."""
    if original is None:
        h, w = run.input.original_size
        original = cv2.resize(input_pixels(run), (w, h), interpolation=cv2.INTER_LINEAR)
    img = original.copy()
    thick = max(2, round(max(img.shape[:2]) / 400))
    for box, score, label in zip(
        found.boxes_original.cpu().tolist(),
        found.scores.tolist(),
        found.labels.tolist(),
        strict=True,
    ):
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), DETECTION, thick, cv2.LINE_AA)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        size = LABEL_SIZE * thick / 2
        fonts.put_text(
            img,
            f"{name} {score:.2f}",
            (x1 + 3, max(y1 - 6, round(size))),
            size,
            DETECTION,
            bold=True,
            outline=OUTLINE,
        )
    n = len(found)
    return _title(
        img,
        ngettext(
            "7. {n} detection with score > {threshold:g}",
            "7. {n} detections with score > {threshold:g}",
            n,
        ).format(n=n, threshold=found.threshold),
    )


def all_stages(
    run: StagedRun,
    found: Detections,
    class_names: tuple[str, ...],
    original: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every picture, keyed by a file stem that sorts in stage order."""
    return {
        "01_input": input_frame(run),
        "02_fpn_levels": fpn_levels(run),
        "03_anchors": anchors(run),
        "04_objectness": objectness(run),
        "05_proposals": proposals(run),
        "06_roi_levels": roi_levels(run),
        "07_detections": detections(run, found, class_names, original),
    }
