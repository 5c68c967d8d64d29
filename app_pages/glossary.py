"""Glossary: the field's terms in English and Korean, as the tutorial uses them, each with a
one-line explanation in the session's language and the page where it shows up."""

from __future__ import annotations

import streamlit as st

from explorer.widgets import intro, page_guard
from frcnn_core.i18n import N_, _

# (English, 한국어, explanation, the page's title): the tutorial's order, from the image to mAP.
TERMS = [
    (
        "ground truth (GT)",
        "정답 박스",
        N_("The boxes and labels a person drew: what the detector must find."),
        N_("Image & ground truth"),
    ),
    (
        "backbone",
        "백본",
        N_("The network that turns the image into feature maps; here VGG16 up to conv5_3."),
        N_("Backbone"),
    ),
    (
        "feature map",
        "특징 맵",
        N_("The backbone's output: 512 channels on a 50 x 50 grid for an 800 x 800 image."),
        N_("Backbone"),
    ),
    (
        "convolution",
        "합성곱",
        N_("A small filter slid over the image or a feature map; the backbone is made of them."),
        N_("Backbone"),
    ),
    (
        "stride",
        "스트라이드",
        N_("Input pixels per feature-map cell: 16 for VGG16, so 800 / 16 = 50."),
        N_("Backbone"),
    ),
    (
        "anchor box",
        "앵커 박스",
        N_(
            "A box of fixed scale and ratio centred on a feature-map cell: 9 per cell, 22,500 in "
            "all."
        ),
        N_("Anchors"),
    ),
    (
        "scale / aspect ratio",
        "스케일 / 종횡비",
        N_("An anchor's size (8, 16, 32 cells) and its height-to-width ratio (0.5, 1, 2)."),
        N_("Anchors"),
    ),
    (
        "IoU (intersection over union)",
        "IoU (교집합/합집합 비율)",
        N_("Overlap of two boxes: the area they share divided by the area they cover together."),
        N_("Anchor labelling"),
    ),
    (
        "positive / negative sample",
        "양성 / 음성 샘플",
        N_(
            "An anchor or RoI labelled as an object (IoU high enough) or as background (IoU low "
            "enough)."
        ),
        N_("Anchor labelling"),
    ),
    (
        "mini-batch sampling",
        "미니배치 샘플링",
        N_(
            "Picking a fixed number of positives and negatives per image (256 anchors, 128 RoIs) "
            "for the loss."
        ),
        N_("Anchor labelling"),
    ),
    (
        "bounding-box regression",
        "바운딩 박스 회귀",
        N_("Predicting the offsets (dx, dy, dw, dh) that move a box onto its object."),
        N_("RPN outputs"),
    ),
    (
        "objectness score",
        "객체성 점수",
        N_("The RPN's estimate that an anchor holds an object, whatever its class."),
        N_("RPN outputs"),
    ),
    (
        "RPN (region proposal network)",
        "RPN (영역 제안 네트워크)",
        N_("The small network on the feature map that scores and adjusts every anchor."),
        N_("RPN outputs"),
    ),
    (
        "region proposal",
        "영역 제안 (proposal)",
        N_("An anchor moved by its predicted offsets and kept for the second stage."),
        N_("Proposals & NMS"),
    ),
    (
        "NMS (non-maximum suppression)",
        "비최대 억제 (NMS)",
        N_(
            "Keeping the highest-scoring box and removing the boxes that overlap it too much, "
            "again and again."
        ),
        N_("Proposals & NMS"),
    ),
    (
        "RoI (region of interest)",
        "관심 영역 (RoI)",
        N_("A proposal sampled for the head: 128 per image, a quarter of them positive."),
        N_("RoI sampling & pooling"),
    ),
    (
        "RoI pooling",
        "RoI 풀링",
        N_(
            "Cutting a RoI's part of the feature map into a fixed 7 x 7 grid and taking each "
            "cell's maximum."
        ),
        N_("RoI sampling & pooling"),
    ),
    (
        "fully connected layer",
        "완전 연결층 (FC)",
        N_("A layer where every output sees every input: fc6 and fc7 of the head."),
        N_("Head & losses"),
    ),
    (
        "classification",
        "분류",
        N_("Choosing a RoI's class, background included, from the head's scores."),
        N_("Head & losses"),
    ),
    (
        "loss function",
        "손실 함수",
        N_(
            "The number training makes smaller: here four, the RPN's and the head's "
            "classification and box losses."
        ),
        N_("Head & losses"),
    ),
    (
        "cross-entropy",
        "교차 엔트로피",
        N_("The classification loss: minus the log of the probability given to the right class."),
        N_("Head & losses"),
    ),
    (
        "smooth L1 loss",
        "스무스 L1 손실",
        N_(
            "The box loss: quadratic for small errors, linear for large ones, so outliers do not "
            "dominate."
        ),
        N_("Head & losses"),
    ),
    ("learning rate", "학습률", N_("How far each training step moves the weights."), N_("Train")),
    (
        "weights",
        "가중치",
        N_("The numbers a network learns; a checkpoint file stores them."),
        N_("Train"),
    ),
    (
        "inference",
        "추론",
        N_("Running a trained network on a new image, without learning."),
        N_("Detect"),
    ),
    (
        "score threshold",
        "점수 임곗값",
        N_("The lowest class score a detection needs to be shown."),
        N_("Detect"),
    ),
    (
        "FPN (feature pyramid network)",
        "특징 피라미드 네트워크 (FPN)",
        N_(
            "Feature maps at several strides (4 to 64), so small and large objects each get a "
            "fitting level."
        ),
        N_("Inside the production detector"),
    ),
    (
        "COCO",
        "COCO",
        N_("A dataset of 80 everyday object classes; torchvision's detectors were trained on it."),
        N_("Detections"),
    ),
    (
        "fine-tuning",
        "파인튜닝",
        N_("Training a network that already learned one task a little more on a new dataset."),
        N_("Fine-tune: train"),
    ),
    (
        "dataset / split",
        "데이터셋 / 분할",
        N_("Images with their boxes, split into training and validation images."),
        N_("Fine-tune: dataset"),
    ),
    ("epoch", "에폭", N_("One pass over every training image."), N_("Fine-tune: train")),
    (
        "precision / recall",
        "정밀도 / 재현율",
        N_(
            "Of the detections, the share that are right; of the objects, the share that are found."
        ),
        N_("Fine-tune: results"),
    ),
    (
        "AP / mAP (mean average precision)",
        "AP / mAP (평균 정밀도)",
        N_("The area under a class's precision-recall curve, and its mean over the classes."),
        N_("Fine-tune: results"),
    ),
]

intro(
    _("Glossary"),
    _(
        "The field's terms in English and in Korean, as the tutorial uses them (앵커 박스, 특징 "
        "맵, 비최대 억제, ...), each with a one-line explanation and the page where you meet it. "
        "The pages write the English term in parentheses at its first use."
    ),
)

with page_guard():
    wanted = st.text_input(
        _("Find a term"),
        placeholder=_("e.g. anchor, NMS, 손실"),
        key="glossary:find",
    ).strip()
    rows = []
    for english, korean, explanation, page in TERMS:
        text = _(explanation)
        if wanted and not any(
            wanted.lower() in s.lower() for s in (english, korean, text, explanation)
        ):
            continue
        rows.append(
            {
                _("English"): english,
                _("Korean"): korean,
                _("What it is"): text,
                _("Where"): _(page),
            }
        )
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch", key="glossary:table")
        st.caption(_("{shown} of {total} terms").format(shown=len(rows), total=len(TERMS)))
    else:
        st.info(_("No term matches {text}.").format(text=repr(wanted)))
