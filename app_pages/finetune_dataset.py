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
from frcnn_core.i18n import N_, _, ngettext

PER_PAGE = 12
THUMB_PX = 246  # four to a row on a laptop, fewer on a narrow screen
SPLIT_NAMES = {
    "all": N_("all images"),
    "train": N_("training images"),
    "val": N_("validation images"),
}

intro(
    _("Fine-tune: your dataset"),
    _(
        "The tutorial ends by training a detector on a dataset of its own: KITTI-tiny, with the "
        "classes Car, Pedestrian and Cyclist. Here you pick the images a production Faster R-CNN "
        "will learn from: the **shipped dataset** (drawn cartoons of the same three classes, made "
        "on this server, nothing downloaded), a **zip you upload** (KITTI, COCO JSON, Pascal VOC "
        "or YOLO), or a folder the server offers. Boxes the annotations mark as *ignored* "
        "(KITTI's DontCare and classes outside the list, COCO's crowds, VOC's difficult objects) "
        "are neither learned nor counted as misses."
    ),
)

with page_guard():
    try:
        data = finetune.ensure_dataset()
    except (DatasetError, OSError) as exc:
        st.error(
            _("The shipped dataset cannot be made here: {reason}").format(
                reason=plain_message(str(exc))
            )
        )
        data = finetune.dataset()

    st.subheader(_("Choose a dataset"))
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
            _("Dataset from"),
            sources,
            # Labels made now, in this run's language (a format_func may be called later,
            # outside the session: AppTest does).
            format_func={s: finetune.source_name(s) for s in sources}.__getitem__,
            horizontal=True,
            key=key,
        ),
    )
    if source == finetune.SHIPPED:
        st.caption(
            _(
                "200 images of 256 × 256 pixels (160 for training, 40 for validation): cars, "
                "pedestrians and cyclists drawn on varied backgrounds, some grey *DontCare* blocks "
                "and some images with no object. The same images on every server."
            )
        )
        if st.button(
            _("Use the shipped dataset"),
            key="ft:use_shipped",
            disabled=data is not None and data.source == finetune.SHIPPED,
        ):
            with st.spinner(_("Reading the shipped dataset…")):
                finetune.use_shipped()
            st.rerun()
    else:
        cols = st.columns([1, 2])
        fmt_key = finetune.sticky("ft:format", "auto")
        fmt = finetune.keep(
            fmt_key,
            cols[0].selectbox(
                _("Format"),
                list(finetune.FORMAT_NAMES),
                format_func={f: finetune.format_name(f) for f in finetune.FORMAT_NAMES}.__getitem__,
                key=fmt_key,
                help=_(
                    "Recognised from the layout: KITTI has training/label_2, VOC Annotations/, "
                    "YOLO images/ and labels/, COCO a JSON file."
                ),
            ),
        )
        classes_key = finetune.sticky("ft:classes", "")
        classes_text = finetune.keep(
            classes_key,
            cols[1].text_input(
                _("Classes (optional)"),
                key=classes_key,
                placeholder="Car, Pedestrian, Cyclist",  # i18n: keep (class names)
                help=_(
                    "Names separated by commas, in the order the model will use. Boxes of "
                    "other classes become ignored boxes. Empty: the dataset's own list (KITTI: the "
                    "tutorial's Car, Pedestrian, Cyclist unless a classes.txt says otherwise)."
                ),
            ),
        )
        if source == finetune.UPLOAD:
            upload = st.file_uploader(
                _("Dataset zip"),
                type=["zip"],
                key="ft:upload",
                max_upload_size=LIMITS_MB["dataset"],
                help=_(
                    "A zip of the dataset folder: KITTI (training/image_2, training/label_2, "
                    "train.txt / val.txt), COCO (a JSON and its images), Pascal VOC (Annotations, "
                    "JPEGImages) or YOLO (images, labels, classes.txt)."
                ),
            )
            with st.spinner(_("Unpacking and reading the dataset…")):
                changed = finetune.take_upload(upload, fmt, classes_text)
            if changed:
                st.rerun()
        else:
            folder_key = finetune.sticky("ft:folder", folders[0])
            if st.session_state[folder_key] not in folders:
                st.session_state[folder_key] = folders[0]
            folder = finetune.keep(
                folder_key,
                st.selectbox(_("Server folder"), folders, format_func=plain, key=folder_key),
            )
            if st.button(_("Use this folder"), key="ft:use_folder"):
                with st.spinner(_("Reading the dataset…")):
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
    st.subheader(_("The dataset"))
    st.markdown(
        f"**{plain(data.title)}** · {finetune.format_name(data.format)} · "
        f"{plain_message(data.split_text())}"
    )
    summary = data.summary
    m = st.columns(5)
    m[0].metric(_("Images"), summary.images)
    m[1].metric(_("Classes"), len(summary.classes))
    m[2].metric(_("Boxes"), sum(summary.boxes_per_class))
    m[3].metric(_("Ignored boxes"), summary.ignored)
    m[4].metric(_("Images without boxes"), summary.images_without_boxes)
    sizes = ", ".join(f"{w} × {h} ({n})" for (w, h), n in summary.image_sizes[:4])
    if len(summary.image_sizes) > 4:
        st.caption(
            _("Image sizes (images): {sizes} and {n} more").format(
                sizes=sizes, n=len(summary.image_sizes) - 4
            )
        )
    else:
        st.caption(_("Image sizes (images): {sizes}").format(sizes=sizes))
    for note in summary.notes:
        st.caption(_("Note: {note}").format(note=plain_message(note)))

    h = st.columns(3)
    h[0].plotly_chart(class_counts_figure(summary), key="ft:counts")
    h[1].plotly_chart(
        histogram_figure(
            summary.size_bins,
            summary.size_counts,
            summary.classes,
            _("Box sizes"),
            _("√(width × height), pixels"),
        ),
        key="ft:sizes",
    )
    h[2].plotly_chart(
        histogram_figure(
            summary.aspect_bins,
            summary.aspect_counts,
            summary.classes,
            _("Box shapes"),
            _("width / height"),
        ),
        key="ft:aspects",
    )
    st.caption(
        _(
            "COCO calls boxes under 32 pixels (square root of the area) small and over 96 large. "
            "Anchors of 32 to 512 pixels and ratios 0.5, 1 and 2 cover these boxes best where the "
            "bars are tallest; ignored boxes are counted above but not in the histograms."
        )
    )

    st.subheader(_("Images"))
    splits = [s for s in ("all", "train", "val") if s in data.splits]
    split_key = finetune.sticky("ft:browse_split", "all")
    if st.session_state[split_key] not in splits:
        st.session_state[split_key] = "all"
    cols = st.columns([2, 1])
    split = finetune.keep(
        split_key,
        cols[0].radio(
            _("Show"),
            splits,
            format_func={s: _(SPLIT_NAMES[s]) for s in splits}.__getitem__,
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
        cols[1].number_input(
            _("Page (of {pages})").format(pages=pages), 1, pages, step=1, key=page_key
        ),
    )
    n = len(shown_set)
    if split == "train":
        count = ngettext(
            "{n} training image, {per_page} a page.", "{n} training images, {per_page} a page.", n
        )
    elif split == "val":
        count = ngettext(
            "{n} validation image, {per_page} a page.",
            "{n} validation images, {per_page} a page.",
            n,
        )
    else:
        count = ngettext("{n} image, {per_page} a page.", "{n} images, {per_page} a page.", n)
    st.caption(
        plain_message(
            _("Boxes: {legend} · ignored: {ignored}.").format(
                legend=legend_text(data.class_names), ignored=_(IGNORED[1])
            )
            + " "
            + count.format(n=n, per_page=PER_PAGE)
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
        ignored, boxes = len(record.ignored_boxes), len(record.boxes)
        if ignored:
            caption = ngettext(
                "{id} · {width} × {height} · {n} box, {ignored} ignored",
                "{id} · {width} × {height} · {n} boxes, {ignored} ignored",
                boxes,
            )
        else:
            caption = ngettext(
                "{id} · {width} × {height} · {n} box",
                "{id} · {width} × {height} · {n} boxes",
                boxes,
            )
        captions.append(
            caption.format(
                id=plain(record.image_id),
                width=record.width,
                height=record.height,
                n=boxes,
                ignored=ignored,
            )
        )
    if pictures:  # one element: the browser lays the pictures out in rows that fit
        st.image(pictures, caption=captions, width=THUMB_PX)
