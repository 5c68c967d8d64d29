"""Fine-tune, step 1: choose a detection dataset and look at it."""

from __future__ import annotations

import streamlit as st

from explorer import finetune
from explorer.text import plain, plain_message
from explorer.uploads import LIMITS_MB
from explorer.views.finetune import (
    IGNORED,
    class_counts_figure,
    dataset_thumbnail,
    histogram_figure,
    legend_text,
)
from explorer.widgets import intro, page_guard
from frcnn_core.datasets import DatasetError, read_pixels

PER_PAGE = 12
THUMB_PX = 246  # four to a row on a laptop, fewer on a narrow screen
SPLIT_NAMES = {"all": "all images", "train": "training images", "val": "validation images"}

intro(
    "Fine-tune: your dataset",
    "The tutorial ends by training a detector on a dataset of its own: KITTI-tiny, with the "
    "classes Car, Pedestrian and Cyclist. Here you pick the images a production Faster R-CNN "
    "will learn from: the **shipped dataset** (drawn cartoons of the same three classes, made "
    "on this server, nothing downloaded), a **zip you upload** (KITTI, COCO JSON, Pascal VOC "
    "or YOLO), or a folder the server offers. Boxes the annotations mark as *ignored* "
    "(KITTI's DontCare and classes outside the list, COCO's crowds, VOC's difficult objects) "
    "are neither learned nor counted as misses.",
)

with page_guard():
    try:
        data = finetune.ensure_dataset()
    except (DatasetError, OSError) as exc:
        st.error(f"The shipped dataset cannot be made here: {plain_message(str(exc))}")
        data = finetune.dataset()

    st.subheader("Choose a dataset")
    sources = [finetune.SHIPPED, finetune.UPLOAD]
    folders = finetune.server_folders()
    if folders:
        sources.append(finetune.SERVER)
    key = finetune.sticky("ft:source", finetune.SHIPPED)
    if st.session_state[key] not in sources:
        st.session_state[key] = finetune.SHIPPED
    source = finetune.keep(
        key,
        st.radio(
            "Dataset from",
            sources,
            format_func=finetune.SOURCE_NAMES.__getitem__,
            horizontal=True,
            key=key,
        ),
    )
    if source == finetune.SHIPPED:
        st.caption(
            "200 images of 256 × 256 pixels (160 for training, 40 for validation): cars, "
            "pedestrians and cyclists drawn on varied backgrounds, some grey *DontCare* blocks "
            "and some images with no object. The same images on every server."
        )
        if st.button(
            "Use the shipped dataset",
            disabled=data is not None and data.source == finetune.SHIPPED,
        ):
            with st.spinner("Reading the shipped dataset…"):
                finetune.use_shipped()
            st.rerun()
    else:
        cols = st.columns([1, 2])
        fmt_key = finetune.sticky("ft:format", "auto")
        fmt = finetune.keep(
            fmt_key,
            cols[0].selectbox(
                "Format",
                list(finetune.FORMAT_NAMES),
                format_func=finetune.FORMAT_NAMES.__getitem__,
                key=fmt_key,
                help="Recognised from the layout: KITTI has training/label_2, VOC Annotations/, "
                "YOLO images/ and labels/, COCO a JSON file.",
            ),
        )
        classes_key = finetune.sticky("ft:classes", "")
        classes_text = finetune.keep(
            classes_key,
            cols[1].text_input(
                "Classes (optional)",
                key=classes_key,
                placeholder="Car, Pedestrian, Cyclist",
                help="Names separated by commas, in the order the model will use. Boxes of "
                "other classes become ignored boxes. Empty: the dataset's own list (KITTI: the "
                "tutorial's Car, Pedestrian, Cyclist unless a classes.txt says otherwise).",
            ),
        )
        if source == finetune.UPLOAD:
            upload = st.file_uploader(
                "Dataset zip",
                type=["zip"],
                key="ft:upload",
                max_upload_size=LIMITS_MB["dataset"],
                help="A zip of the dataset folder: KITTI (training/image_2, training/label_2, "
                "train.txt / val.txt), COCO (a JSON and its images), Pascal VOC (Annotations, "
                "JPEGImages) or YOLO (images, labels, classes.txt).",
            )
            with st.spinner("Unpacking and reading the dataset…"):
                changed = finetune.take_upload(upload, fmt, classes_text)
            if changed:
                st.rerun()
        else:
            folder_key = finetune.sticky("ft:folder", folders[0])
            if st.session_state[folder_key] not in folders:
                st.session_state[folder_key] = folders[0]
            folder = finetune.keep(
                folder_key,
                st.selectbox("Server folder", folders, format_func=plain, key=folder_key),
            )
            if st.button("Use this folder"):
                with st.spinner("Reading the dataset…"):
                    finetune.use_server_folder(folder, fmt, classes_text)
                st.rerun()

    kind, text = finetune.message()
    if kind == "error":
        st.error(plain_message(text or ""), icon=":material/block:")
    elif kind == "success":
        st.success(plain_message(text or ""))

    if data is None:
        st.stop()

    st.divider()
    st.subheader("The dataset")
    st.markdown(
        f"**{plain(data.name)}** · {finetune.FORMAT_NAMES[data.format]} · "
        f"{plain_message(data.split_text())}"
    )
    summary = data.summary
    m = st.columns(5)
    m[0].metric("Images", summary.images)
    m[1].metric("Classes", len(summary.classes))
    m[2].metric("Boxes", sum(summary.boxes_per_class))
    m[3].metric("Ignored boxes", summary.ignored)
    m[4].metric("Images without boxes", summary.images_without_boxes)
    sizes = ", ".join(f"{w} × {h} ({n})" for (w, h), n in summary.image_sizes[:4])
    more = f" and {len(summary.image_sizes) - 4} more" if len(summary.image_sizes) > 4 else ""
    st.caption(f"Image sizes (images): {sizes}{more}")
    for note in summary.notes:
        st.caption(f"Note: {plain_message(note)}")

    h = st.columns(3)
    h[0].plotly_chart(class_counts_figure(summary), key="ft:counts")
    h[1].plotly_chart(
        histogram_figure(
            summary.size_bins,
            summary.size_counts,
            summary.classes,
            "Box sizes",
            "√(width × height), pixels",
        ),
        key="ft:sizes",
    )
    h[2].plotly_chart(
        histogram_figure(
            summary.aspect_bins,
            summary.aspect_counts,
            summary.classes,
            "Box shapes",
            "width / height",
        ),
        key="ft:aspects",
    )
    st.caption(
        "COCO calls boxes under 32 pixels (square root of the area) small and over 96 large. "
        "Anchors of 32 to 512 pixels and ratios 0.5, 1 and 2 cover these boxes best where the "
        "bars are tallest; ignored boxes are counted above but not in the histograms."
    )

    st.subheader("Images")
    splits = [s for s in ("all", "train", "val") if s in data.splits]
    split_key = finetune.sticky("ft:browse_split", "all")
    if st.session_state[split_key] not in splits:
        st.session_state[split_key] = "all"
    cols = st.columns([2, 1])
    split = finetune.keep(
        split_key,
        cols[0].radio(
            "Show",
            splits,
            format_func=SPLIT_NAMES.__getitem__,
            horizontal=True,
            key=split_key,
        ),
    )
    shown_set = data.splits[split]
    pages = finetune.page_count(len(shown_set), PER_PAGE)
    page_key = finetune.sticky("ft:page", 1)
    st.session_state[page_key] = min(max(int(st.session_state[page_key]), 1), pages)
    page = finetune.keep(
        page_key,
        cols[1].number_input(f"Page (of {pages})", 1, pages, step=1, key=page_key),
    )
    st.caption(
        plain_message(
            f"Boxes: {legend_text(data.class_names)} · ignored: {IGNORED[1]}. "
            f"{len(shown_set)} {SPLIT_NAMES[split]}, {PER_PAGE} a page."
        )
    )
    indices = finetune.page_slice(len(shown_set), int(page), PER_PAGE)
    pictures, captions = [], []
    for i in indices:
        record = shown_set.images[i]
        try:
            pixels = read_pixels(record)
        except DatasetError as exc:
            st.warning(plain_message(str(exc)))
            continue
        pictures.append(dataset_thumbnail(pixels, record, data.class_names))
        ignored = len(record.ignored_boxes)
        extra = f", {ignored} ignored" if ignored else ""
        captions.append(
            f"{plain(record.image_id)} · {record.width} × {record.height} · "
            f"{len(record.boxes)} box{'es' if len(record.boxes) != 1 else ''}{extra}"
        )
    if pictures:  # one element: the browser lays the pictures out in rows that fit
        st.image(pictures, caption=captions, width=THUMB_PX)
