"""Train the RPN and the Fast R-CNN head on this image (or all samples) and watch them learn."""

from __future__ import annotations

import functools

import streamlit as st

from explorer import jobs, models, training
from explorer.text import plain_message
from explorer.uploads import LIMITS_MB
from explorer.views.train import loss_curves
from explorer.widgets import intro, page_guard, queue_notice, run_or_stop
from frcnn_core.i18n import _, ngettext
from frcnn_core.train import TrainParams

DEFAULTS = TrainParams()
POLL_S = 0.5

intro(
    _("Train"),
    _(
        "Freshly initialised, the RPN scores every anchor about 0.5 and the head guesses; the "
        "proposals are noise. Here both heads learn from your boxes with SGD while the "
        "backbone stays frozen (its features are computed once per image). The trained "
        "weights belong to **this browser session only**: every other page uses them, other "
        "users never see them."
    ),
    _(
        "per iteration: RPN on 512 × 50 × 50 → 256 anchors in the loss → 2000 proposals → "
        "128 RoIs → head → total loss → backward → SGD step"
    ),
)

with page_guard():
    run = run_or_stop()
    own = models.session_model()
    job = training.current()
    running = training.running()

    with st.sidebar:
        st.subheader(_("Training"))
        scope = st.radio(
            _("Train on"),
            [training.SCOPE_CURRENT, training.SCOPE_SAMPLES],
            # Named in this run (a format_func may also be called outside the session).
            format_func={
                s: training.scope_name(s) for s in (training.SCOPE_CURRENT, training.SCOPE_SAMPLES)
            }.__getitem__,
            key="train:scope",
            disabled=running,
        )
        iterations = st.slider(
            _("Iterations"), 1, 300, 60, key="train:iterations", disabled=running
        )
        lr = st.select_slider(
            _("Learning rate"),
            [0.0001, 0.0003, 0.001, 0.003, 0.01],
            value=DEFAULTS.learning_rate,
            key="train:lr",
            disabled=running,
            help=_("The RPN's (and fc6 / fc7's or conv5's when they train)."),
        )
        standardize = st.toggle(
            _("Standardise fc7 for the head"),
            value=DEFAULTS.standardize_fc7,
            key="train:standardize",
            disabled=running,
            help=_(
                "The class-score and box-delta layers see fc7's output minus its mean, divided "
                "by its RMS norm (both measured before training), and learn at their own rate. "
                "Folded into their weights when training stops, so the model is unchanged. "
                "Off, as in the tutorial: with random backbone weights the loss still falls, "
                "but the head learns only how many RoIs are background, not where the objects "
                "are."
            ),
        )
        head_lr = st.select_slider(
            _("Head learning rate"),
            [0.03, 0.1, 0.3, 1.0],
            value=DEFAULTS.head_learning_rate,
            key="train:head_lr",
            disabled=running or not standardize,
            help=_(
                "The class-score layer's, on standardised fc7; the box-delta layer's is this "
                "divided by the box loss weight λ (10), which makes its steps 10x larger. Both "
                "are divided by the number of training images. (Not standardised: the learning "
                "rate above.)"
            ),
        )
        momentum = st.slider(
            _("Momentum"),
            0.0,
            0.99,
            DEFAULTS.momentum,
            0.01,
            key="train:momentum",
            disabled=running,
        )
        decay = st.select_slider(
            _("Weight decay"),
            [0.0, 0.0001, 0.0005, 0.001],
            value=DEFAULTS.weight_decay,
            key="train:decay",
            disabled=running,
        )
        warmup = st.slider(
            _("Warm-up iterations"),
            0,
            30,
            DEFAULTS.warmup_iterations,
            key="train:warmup",
            disabled=running,
            help=_(
                "The learning rates rise linearly to their value over these first iterations, "
                "so the first, largest gradients do not throw the box deltas off."
            ),
        )
        train_fc = st.toggle(
            _("Train fc6 / fc7 too"),
            key="train:fc",
            disabled=running,
            help=_(
                "118 M parameters: about 3x slower per iteration and a 470 MB weights file. "
                "Off: they keep their initial weights and only the RPN and the output layers "
                "learn."
            ),
        )
        last_block = st.toggle(
            _("Train the conv5 block too"),
            key="train:conv5",
            disabled=running,
            help=_("Unfreeze VGG16's last three convolutions (7 M parameters)."),
        )

    settings = TrainParams(
        iterations=iterations,
        learning_rate=lr,
        head_learning_rate=head_lr,
        momentum=momentum,
        weight_decay=decay,
        warmup_iterations=warmup,
        standardize_fc7=standardize,
        train_fc=train_fc,
        train_last_block=last_block,
    )
    with st.expander(_("Why the head trains on standardised fc7 features")):
        st.markdown(
            _(
                "With random backbone weights, fc7 gives almost the same small vector for every "
                "RoI: on the zebras its mean carries about 80 % of its energy. Trained on it "
                "with one learning rate, as in the tutorial, the loss falls (3.7 → 1.3 in 60 "
                "iterations) but the head learns little more than *most RoIs are background*, "
                "and its best-scored detections miss the zebras; a larger learning rate makes "
                "the box-delta loss diverge.\n\n"
                "So the class-score and box-delta layers see **(fc7 − mean) / scale**, both "
                "measured once, before training, on a batch of RoIs from each image, and learn "
                "at their own rates: the head learning rate for the class scores, that divided "
                "by λ = 10 (the weight of the box loss) for the box deltas, both divided by the "
                "number of training images. On the zebras the loss then falls 3.8 → 0.8 in 60 "
                "iterations and the four best-scored detections sit on the four zebras.\n\n"
                "This is a change of coordinates, not of the model: when training stops it is "
                "folded into those layers' weights and biases, so every page and the weights "
                "file see a plain Fast R-CNN head. A gradient whose norm exceeds 10 is scaled "
                "down: a safety net the defaults do not reach on the zebras; it keeps *Train "
                "fc6 / fc7* from diverging."
            )
        )
    # One row, each button as wide as its label: in columns, the longer Korean labels were cut.
    row = st.container(horizontal=True)
    if row.button(_("Start training"), type="primary", disabled=running, key="train:start"):
        with st.spinner(_("Preparing the training…")):
            error = training.start(scope, settings)
        if error:
            st.warning(error)
        else:
            st.rerun()
    if row.button(
        _("Stop"),
        disabled=not running,
        help=_("Keep the weights trained so far"),
        key="train:stop",
    ):
        training.stop()
        st.rerun()
    if row.button(
        _("Reset to initial weights"),
        disabled=running or (own is None and job is None),
        key="train:reset",
    ):
        training.reset()
        st.toast(_("Back to the initial weights"))
        st.rerun()

    @st.fragment(run_every=POLL_S if running else None)
    def progress() -> None:
        """The job's progress, polled: training runs in a worker, not in this script."""
        current = training.current()
        if current is None:
            return
        job = current.job
        if job.state == jobs.QUEUED:
            ahead = training.QUEUE.ahead(job)
            queue_notice(ahead)
            return
        if not job.active and not current.taken:
            st.rerun()  # ended: the whole page reruns, and the router installs the model
        info = job.progress
        history = info.get("history", [])
        n, total = len(history), current.settings.iterations
        if job.active and not history:
            st.progress(0.0, text=training.phase_text(info) or _("starting…"))
        else:
            text = {
                jobs.CANCELLED: _("iteration {n} / {total} (stopped) on {images}"),
                jobs.FAILED: _("iteration {n} / {total} (failed) on {images}"),
            }.get(job.state, _("iteration {n} / {total} on {images}"))
            st.progress(
                n / total,
                text=text.format(n=n, total=total, images=", ".join(current.images)),
            )
        if job.error:
            st.error(
                _("Training failed: {error}. Your model is unchanged.").format(
                    error=plain_message(job.error)
                )
            )
        diverged = training.diverged_text(info)
        if diverged:
            st.error(plain_message(diverged))
        rates = info.get("base_rates")
        if rates:
            rpn_rate, score_rate, box_rate = rates
            st.caption(
                _(
                    "Learning rates after the warm-up: RPN {rpn:g} · class scores {score:.3g} · "
                    "box deltas {box:.3g}"
                ).format(rpn=rpn_rate, score=score_rate, box=box_rate)
            )
        if history:
            first, last = history[0], history[-1]
            m = st.columns(4)
            m[0].metric(
                _("Total loss"),
                f"{last['total']:.3f}",
                f"{last['total'] - first['total']:+.3f}",
                delta_color="inverse",
            )
            m[1].metric(_("RPN loss"), f"{last['rpn_cls'] + last['rpn_loc']:.3f}")
            m[2].metric(_("Head loss"), f"{last['roi_cls'] + last['roi_loc']:.3f}")
            mean = sum(h["seconds"] for h in history) / len(history)
            m[3].metric(_("Time per iteration"), _("{s:.2f} s").format(s=mean))
            st.plotly_chart(loss_curves(history), width="stretch", key="loss_curves")
        if job.active:
            st.caption(_("Training goes on while you look at other pages."))

    progress()

    st.divider()
    st.subheader(_("This session's model"))
    if own is None:
        st.info(_("Initial weights (seeded). Train, or upload weights you downloaded earlier."))
    else:
        names = ", ".join(own.class_names)
        count = len(own.class_names)
        said = (
            ngettext(
                "Trained heads for {n} class ({names}); every page uses them.",
                "Trained heads for {n} classes ({names}); every page uses them.",
                count,
            )
            if own.source == "trained"
            else ngettext(
                "Loaded from {source}: heads for {n} class ({names}); every page uses them.",
                "Loaded from {source}: heads for {n} classes ({names}); every page uses them.",
                count,
            )
        )
        st.success(plain_message(said.format(n=count, names=names, source=own.source)))
        if set(run.ground_truth.labels) - set(own.class_names):
            st.warning(
                _(
                    "The current image has labels the trained model does not know, so the "
                    "pages use the initial weights for it. Train again, or relabel the boxes."
                )
            )
        # Built when clicked: a class of sessions with models holds no copies of their files.
        st.download_button(
            _("Download trained weights ({mb:.1f} MB)").format(
                mb=training.download_size(own) / 1e6
            ),
            functools.partial(training.model_bytes, own),
            file_name="frcnn_explorer_heads.pt",
            mime="application/octet-stream",
        )
    upload = st.file_uploader(
        _("Load weights (.pt from this page or `python -m frcnn_core train`)"),
        type=["pt", "pth"],
        key=training.upload_key(),
        max_upload_size=LIMITS_MB["heads"],
    )
    if training.take_upload(upload):
        st.rerun()
    kind, text = training.upload_message()
    if kind == "error":
        st.error(plain_message(text or ""))
    elif kind == "success":
        st.success(plain_message(text or ""))
