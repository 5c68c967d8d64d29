"""Fine-tune, step 3: how good the fine-tuned model is, where it is right and wrong, and taking it
away (a download, or the production-detector pages)."""

from __future__ import annotations

import functools

import streamlit as st

from explorer import finetune
from explorer.text import plain, plain_message, shown
from explorer.views.finetune import matches_figure, outcome_thumbnail, pr_figure
from explorer.widgets import intro, page_guard
from frcnn_core.datasets import DatasetError, read_pixels
from frcnn_core.evaluate import EvaluationError
from frcnn_core.i18n import N_, _

SHOWN_IMAGES = 4
THUMB_PX = 246
NO_GROUND_TRUTH = N_("no ground truth")

intro(
    _("Fine-tune: results"),
    _(
        "The fine-tuned model on the validation images, which it never trained on. A detection "
        "is a **true positive** when it overlaps a box of its class by IoU 0.5 or more (each box "
        "matches one detection, the highest scored first), else a **false positive**; a box no "
        "detection matched is a **miss**. Sorting the detections by score and counting as the "
        "threshold falls gives the **precision-recall curve**; the area under it is the class's "
        "average precision (AP), and their mean the tutorial's mAP@0.5. COCO's mAP@[.5:.95] "
        "averages it over stricter overlaps, 0.5 to 0.95."
    ),
)

with page_guard():
    run = finetune.model_run()
    latest = finetune.current()
    if run is None:
        if latest is not None and latest.job.active:
            st.info(_("Your training is still running: its results appear here when it ends."))
        else:
            st.info(_("No fine-tuned model yet: train one on the **Fine-tune: train** page."))
        st.stop()
    if latest is not None and latest is not run and latest.job.active:
        st.info(_("A new training of yours is running; these are the results of the last one."))
    outcome = run.outcome
    assert outcome is not None  # a kept run has one
    settings = run.settings
    best = outcome.model is not None and outcome.model.name == "best.pt"
    if outcome.state == "finished":
        summary = (
            _(
                "{model} trained on {dataset}: {n} iterations (finished) in {time}. The model "
                "kept is from epoch {epoch}: the best by mAP@0.5."
            )
            if best
            else _(
                "{model} trained on {dataset}: {n} iterations (finished) in {time}. The model "
                "kept is from epoch {epoch}: the last weights reached (no evaluation before)."
            )
        )
    else:
        summary = (
            _(
                "{model} trained on {dataset}: {n} iterations (cancelled) in {time}. The model "
                "kept is from epoch {epoch}: the best by mAP@0.5."
            )
            if best
            else _(
                "{model} trained on {dataset}: {n} iterations (cancelled) in {time}. The model "
                "kept is from epoch {epoch}: the last weights reached (no evaluation before)."
            )
        )
    st.markdown(
        plain_message(
            summary.format(
                model=finetune.MODEL_NAMES.get(settings.model, settings.model),
                dataset=run.dataset.title,
                n=outcome.iterations,
                time=finetune.duration(outcome.seconds),
                epoch=outcome.model_epoch,
            )
        )
    )
    if outcome.note:
        st.caption(_("Starting weights: {note}").format(note=plain_message(outcome.note)))

    try:
        val, result = finetune.evaluation(run)
    except (DatasetError, EvaluationError, OSError) as exc:
        st.error(
            _(
                "The validation images or the saved detections of this run cannot be read any "
                "more ({reason}). Train again to see results."
            ).format(reason=plain_message(str(exc)))
        )
        st.stop()

    m = st.columns(4)
    m[0].metric("mAP@0.5", f"{result.map50:.3f}" if result.map50 is not None else "—")
    m[1].metric("mAP@[.5:.95]", f"{result.map:.3f}" if result.map is not None else "—")
    m[2].metric(_("Validation images"), len(val))
    m[3].metric(_("Ground-truth boxes"), sum(c.ground_truth for c in result.per_class))

    st.subheader(_("Per class"))
    # Headers in the session's language: nothing reads this table back.
    table = [
        {
            _("Class"): shown(c.name),
            _("Boxes"): c.ground_truth,
            _("Detections"): c.detections,
            "AP@0.5": f"{c.ap50:.3f}" if c.ap50 is not None else _(NO_GROUND_TRUTH),
            "AP@[.5:.95]": f"{c.ap:.3f}" if c.ap is not None else _(NO_GROUND_TRUTH),
        }
        for c in result.per_class
    ]
    cols = st.columns([1, 1])
    cols[0].dataframe(table, hide_index=True, key="ft:ap_table")
    cols[0].caption(
        _(
            "A class with no box among the validation images has no AP: it is left out of the "
            "means, as COCO does."
        )
    )
    if any(c.ap50 is not None for c in result.per_class):
        cols[1].plotly_chart(pr_figure(result.per_class), key="ft:pr")

    st.subheader(_("Validation images"))
    threshold_key = finetune.sticky("ft:threshold", 0.3)
    threshold = finetune.keep(
        threshold_key,
        st.slider(
            _("Score threshold"),
            0.0,
            1.0,
            step=0.05,
            key=threshold_key,
            help=_(
                "Only detections scored at least this count (the tutorial shows 0.3 and up). "
                "Raising it trades false positives for misses."
            ),
        ),
    )
    ranked = result.ranked_images(threshold)
    by_id = {o.image_id: o for o in ranked}
    tp = sum(len(o.true_positives) for o in ranked)
    fp = sum(len(o.false_positives) for o in ranked)
    missed = sum(len(o.missed) for o in ranked)
    st.caption(
        _(
            "At score {threshold:.2f}: {tp} true positives (green), {fp} false positives (red), "
            "{missed} misses (yellow, dashed); ignored boxes are grey and dotted."
        ).format(threshold=threshold, tp=tp, fp=fp, missed=missed)
    )
    ids = [r.image_id for r in val.images]
    image_key = finetune.sticky("ft:image", ids[0])
    if st.session_state[image_key] not in ids:
        st.session_state[image_key] = ids[0]

    def describe(image_id: str) -> str:
        o = by_id[image_id]
        return _("{id}: {tp} TP, {fp} FP, {missed} missed").format(
            id=shown(image_id),
            tp=len(o.true_positives),
            fp=len(o.false_positives),
            missed=len(o.missed),
        )

    chosen = finetune.keep(
        image_key,
        # Labels made now, in this run's language (not later, outside the session).
        st.selectbox(
            _("Image"), ids, format_func={i: describe(i) for i in ids}.__getitem__, key=image_key
        ),
    )
    i = val.index(chosen)
    record = val.images[i]
    pixels = read_pixels(record)
    st.plotly_chart(
        matches_figure(
            pixels,
            record,
            result.predictions[i],
            by_id[chosen],
            val.classes,
            height=min(560, max(420, record.height)),
        ),
        key="ft:matches",
    )

    def thumbnails(title: str, outcomes: list) -> None:
        st.markdown(f"**{title}**")
        pictures, captions = [], []
        for o in outcomes:
            k = val.index(o.image_id)
            rec = val.images[k]
            pixels = read_pixels(rec)
            pictures.append(outcome_thumbnail(pixels, rec, result.predictions[k], o, val.classes))
            captions.append(
                _("{id} · F1 {f1:.2f} · {tp} TP, {fp} FP, {missed} missed").format(
                    id=plain(o.image_id),
                    f1=o.f1,
                    tp=len(o.true_positives),
                    fp=len(o.false_positives),
                    missed=len(o.missed),
                )
            )
        st.image(pictures, caption=captions, width=THUMB_PX)

    # The worst and the best, never the same image twice (a small validation set).
    count = min(SHOWN_IMAGES, len(ranked) // 2) or len(ranked)
    thumbnails(_("Worst images (lowest F1: the most false positives and misses)"), ranked[:count])
    rest = ranked[count:]
    if rest:
        thumbnails(_("Best images"), list(reversed(rest))[:count])
    st.caption(
        _(
            "Green: true positives, red: false positives, yellow dashed: misses, grey dotted: "
            "ignored boxes. F1 = 2 TP / (2 TP + FP + misses): 1 when every box is found and "
            "nothing else, 0 when nothing is right."
        )
    )

    st.subheader(_("Take the model with you"))
    found = finetune.model_file(run)
    if found is None:
        st.warning(_("The model's file is gone from the server (old runs are cleaned up)."))
    else:
        path, size = found
        if finetune.fits_upload_limit(size):
            st.download_button(
                _("Download the fine-tuned model ({size:.0f} MB)").format(size=size / 2**20),
                functools.partial(path.read_bytes),
                file_name=f"finetuned_{settings.model}.pt",
                mime="application/octet-stream",
                on_click="ignore",
                key="ft:download",
                help=_(
                    "Weights, class names and training settings in one file: "
                    "`python -m frcnn_core detect --weights FILE` and the production-detector "
                    "pages load it."
                ),
            )
        else:
            st.warning(
                _(
                    "The model file is {size:.0f} MB, over the {limit} MB a checkpoint upload "
                    "may be: it is not offered for download, since it could not be loaded back."
                ).format(size=size / 2**20, limit=finetune.LIMITS_MB["checkpoint"])
            )
        if run.registered:
            st.caption(
                plain_message(
                    _(
                        "It is in the detector menu of the production-detector pages as “{label}”."
                    ).format(label=finetune.model_label(run))
                )
            )
            if st.button(_("Choose it on the production-detector pages"), key="ft:choose"):
                error = finetune.register(run, select=True)
                if error:
                    st.error(
                        _("It cannot be listed there: {reason}").format(reason=plain_message(error))
                    )
                else:
                    st.toast(_("Chosen: the production-detector pages now run your model."))
        elif run.register_error:
            st.warning(
                _("It cannot be listed on the production-detector pages: {reason}").format(
                    reason=plain_message(_(run.register_error))
                )
            )
