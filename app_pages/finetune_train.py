"""Fine-tune, step 2: the tutorial's training settings, a training run in the background, and its
live loss and mAP curves."""

from __future__ import annotations

import streamlit as st

from explorer import finetune, jobs
from explorer.text import plain_message
from explorer.views.finetune import loss_figure, map_figure
from explorer.widgets import intro, page_guard, queue_notice
from frcnn_core.datasets import DatasetError
from frcnn_core.detectors import MODELS
from frcnn_core.finetune import BASE_BATCH, BASE_LR
from frcnn_core.i18n import N_, _, ngettext

POLL_S = 1.5  # seconds between looks at a running training
START_NAMES = {
    finetune.WEIGHTS_COCO: N_("COCO weights"),
    finetune.WEIGHTS_RANDOM: N_("random weights"),
}
# The job's states, and a run's outcome ("finished" / "cancelled"), as the progress bar says them.
STATE_NAMES = {
    jobs.RUNNING: N_("training"),
    jobs.DONE: N_("finished"),
    jobs.CANCELLED: N_("cancelled"),
    jobs.FAILED: N_("failed"),
    "finished": N_("finished"),
}


intro(
    _("Fine-tune: train"),
    _(
        "The tutorial's recipe on torchvision's Faster R-CNN: start from the COCO checkpoint, "
        "replace the box predictor by one for your classes, and train with SGD (momentum 0.9, "
        "weight decay 0.0001) at the learning rate of the **linear rule**: 0.02 for 16 images a "
        "step, scaled to your batch, so 2 images on one device train at 0.02 / 8 = 0.0025. The "
        "tutorial trains 12 epochs and lowers the rate tenfold after epochs 8 and 11. Every few "
        "epochs the model is scored on the validation images: **mAP@0.5**, the tutorial's "
        "metric. Training runs on the server in the background: switch pages, come back, it goes "
        "on."
    ),
)

with page_guard():
    try:
        data = finetune.ensure_dataset()
    except (DatasetError, OSError) as exc:
        st.error(_("No dataset to train on: {reason}").format(reason=plain_message(str(exc))))
        st.stop()
    run = finetune.current()
    busy = finetune.running()
    st.markdown(
        _("Training on {dataset}. Change it on the **Fine-tune: dataset** page.").format(
            dataset=plain_message(data.describe())
        )
    )

    st.subheader(_("Settings"))
    recipes = st.columns([1, 1, 3])
    recipes[0].button(
        _("Tutorial's settings"),
        key="ft:tutorial",
        on_click=finetune.apply,
        args=(finetune.TUTORIAL,),
        disabled=busy,
        help=_(
            "ResNet-50 FPN from COCO, 12 epochs of 2 images a step at the linear rule's "
            "0.0025, decay after epochs 8 and 11, images resized to 800-1333 pixels."
        ),
    )
    recipes[1].button(
        _("Quick CPU recipe"),
        key="ft:quick",
        on_click=finetune.apply,
        args=(finetune.quick_recipe(),),
        disabled=busy,
        type="primary",
        help=_(
            "Measured on the shipped dataset on a busy 2-core CPU: the MobileNet model from "
            "random weights at the images' 256 pixels, 4 images a step at 0.02 with a 50-iteration "
            "warm-up and clipping, 6 epochs: mAP@0.5 on the validation images goes from 0.0007 to "
            "0.86 in about 7 minutes."
        ),
    )
    recipes[2].caption(
        _(
            "The tutorial's settings need a GPU (or hours on a CPU, and COCO weights). The quick "
            "CPU recipe trains the small MobileNet model from scratch in minutes on the shipped "
            "dataset."
        )
    )

    cols = st.columns(3)
    with cols[0].container(border=True):
        st.markdown(_("**Model**"))
        model = finetune.remember(
            "model",
            st.selectbox(
                _("Detector"),
                list(MODELS),
                format_func=finetune.MODEL_NAMES.__getitem__,
                key=finetune.widget_key("model"),
                disabled=busy,
                help=_(
                    "ResNet-50 FPN is built like the tutorial's MMDetection model; v2 is more "
                    "accurate; MobileNetV3-Large FPN is several times faster on a CPU."
                ),
            ),
        )
        start_from = finetune.remember(
            "start",
            st.radio(
                _("Start from"),
                [finetune.WEIGHTS_COCO, finetune.WEIGHTS_RANDOM],
                # Labels made now, in this run's language (not later, outside the session).
                format_func={v: _(name) for v, name in START_NAMES.items()}.__getitem__,
                key=finetune.widget_key("start"),
                horizontal=True,
                disabled=busy,
                help=_(
                    "COCO weights already know what objects look like (the tutorial starts "
                    "there); random weights must learn everything from your images."
                ),
            ),
        )
        if not finetune.coco_available(model):
            st.warning(
                _(
                    "COCO weights for {name} are not on this server, so training starts from "
                    "**random weights**: the model must learn what objects look like from your "
                    "images alone, and mAP rises far more slowly. To get them, run "
                    "`python -m frcnn_core fetch-weights --model {model}` where a network exists."
                ).format(name=finetune.MODEL_NAMES[model], model=model),
                icon=":material/warning:",
            )
        elif start_from == finetune.WEIGHTS_RANDOM:
            st.caption(_("Random weights, as asked: COCO weights are on this server too."))
        finetune.remember(
            "epochs",
            st.number_input(
                _("Epochs"), 1, 200, step=1, key=finetune.widget_key("epochs"), disabled=busy
            ),
        )
        batch = finetune.remember(
            "batch_size",
            st.number_input(
                _("Images per step (batch size)"),
                1,
                32,
                step=1,
                key=finetune.widget_key("batch_size"),
                disabled=busy,
            ),
        )
        finetune.remember(
            "seed",
            st.number_input(
                _("Seed"),
                0,
                2**31 - 1,
                step=1,
                key=finetune.widget_key("seed"),
                disabled=busy,
                help=_(
                    "Seeds the new layers' weights, the order of the images and the flips: "
                    "the same seed and settings train the same model."
                ),
            ),
        )

    with cols[1].container(border=True):
        st.markdown(_("**Learning rate**"))
        rule = finetune.remember(
            "linear_rule",
            st.toggle(
                _("Linear rule"),
                key=finetune.widget_key("linear_rule"),
                disabled=busy,
                help=_(
                    "The rate grows with the images per step: twice the batch, twice the "
                    "rate (Goyal et al., 2017). MMDetection's 0.02 is for 8 GPUs × 2 images."
                ),
            ),
        )
        rule_lr = BASE_LR * int(batch) / BASE_BATCH
        if rule:
            st.markdown(
                ngettext(
                    "{base:g} × {n} image per step × 1 process ÷ {base_batch} = **{lr:.4g}**",
                    "{base:g} × {n} images per step × 1 process ÷ {base_batch} = **{lr:.4g}**",
                    int(batch),
                ).format(base=BASE_LR, n=int(batch), base_batch=BASE_BATCH, lr=rule_lr)
            )
        else:
            finetune.remember(
                "lr",
                st.number_input(
                    _("Learning rate"),
                    0.00001,
                    1.0,
                    step=0.0005,
                    format="%.5f",
                    key=finetune.widget_key("lr"),
                    disabled=busy,
                ),
            )
        finetune.remember(
            "warmup_iters",
            st.number_input(
                _("Warm-up iterations"),
                0,
                10000,
                step=10,
                key=finetune.widget_key("warmup_iters"),
                disabled=busy,
                help=_(
                    "The rate rises linearly from a thousandth of its value over these "
                    "first iterations (the tutorial: none)."
                ),
            ),
        )
        finetune.remember(
            "lr_steps",
            st.multiselect(
                _("Lower the rate after epochs"),
                list(range(1, 201)),
                key=finetune.widget_key("lr_steps"),
                disabled=busy,
                help=_(
                    "Step decay: after each of these epochs the rate is multiplied by the "
                    "factor below (the tutorial: after 8 and 11)."
                ),
            ),
        )
        finetune.remember(
            "gamma",
            st.number_input(
                _("Decay factor"),
                0.001,
                1.0,
                step=0.05,
                format="%.3f",
                key=finetune.widget_key("gamma"),
                disabled=busy,
            ),
        )
        finetune.remember(
            "momentum",
            st.number_input(
                _("Momentum"),
                0.0,
                0.999,
                step=0.05,
                format="%.3f",
                key=finetune.widget_key("momentum"),
                disabled=busy,
            ),
        )
        finetune.remember(
            "weight_decay",
            st.number_input(
                _("Weight decay"),
                0.0,
                0.1,
                step=0.0001,
                format="%.5f",
                key=finetune.widget_key("weight_decay"),
                disabled=busy,
            ),
        )
        finetune.remember(
            "clip_grad_norm",
            st.number_input(
                _("Clip gradients to norm (0: off)"),
                0.0,
                1000.0,
                step=1.0,
                key=finetune.widget_key("clip_grad_norm"),
                disabled=busy,
                help=_(
                    "Scales the gradients down when their total norm exceeds this: keeps the "
                    "first steps from random weights from throwing the model off."
                ),
            ),
        )

    with cols[2].container(border=True):
        st.markdown(_("**Images and evaluation**"))
        finetune.remember(
            "hflip",
            st.slider(
                _("Horizontal flip probability"),
                0.0,
                1.0,
                step=0.05,
                key=finetune.widget_key("hflip"),
                disabled=busy,
                help=_(
                    "Each training image is mirrored with this probability (the tutorial: "
                    "0.5): twice the views of every object."
                ),
            ),
        )
        size = st.columns(2)
        finetune.remember(
            "min_size",
            size[0].number_input(
                _("Shorter side"),
                64,
                1600,
                step=32,
                key=finetune.widget_key("min_size"),
                disabled=busy,
                help=_(
                    "Images are resized so their shorter side is this many pixels (the "
                    "tutorial: 800), unless the longer side would exceed its limit."
                ),
            ),
        )
        finetune.remember(
            "max_size",
            size[1].number_input(
                _("Longer side at most"),
                64,
                2400,
                step=32,
                key=finetune.widget_key("max_size"),
                disabled=busy,
            ),
        )
        finetune.remember(
            "amp",
            st.toggle(
                _("Mixed precision (CUDA only)"),
                key=finetune.widget_key("amp"),
                disabled=busy or not finetune.cuda_here(),
                help=_("float16 where it is safe: faster on a GPU, half the activation memory."),
            ),
        )
        every = st.columns(2)
        finetune.remember(
            "eval_interval",
            every[0].number_input(
                _("Evaluate every (epochs)"),
                1,
                200,
                step=1,
                key=finetune.widget_key("eval_interval"),
                disabled=busy,
                help=_(
                    "mAP on the validation images; the last epoch is always evaluated, and "
                    "the best model (by mAP@0.5) is kept."
                ),
            ),
        )
        finetune.remember(
            "checkpoint_interval",
            every[1].number_input(
                _("Save every (epochs)"),
                1,
                200,
                step=1,
                key=finetune.widget_key("checkpoint_interval"),
                disabled=busy,
                help=_(
                    "Resumable checkpoints (weights and optimizer) in the run's folder on the "
                    "server; the last epoch is always saved. They are removed when you start your "
                    "next training; the best model is kept."
                ),
            ),
        )
        finetune.remember(
            "eval_at_start",
            st.toggle(
                _("Evaluate before training too"),
                key=finetune.widget_key("eval_at_start"),
                disabled=busy,
                help=_("The untrained model's mAP, as a baseline for the curve."),
            ),
        )
        with st.expander(_("More")):
            finetune.remember(
                "log_interval",
                st.number_input(
                    _("Log every (iterations)"),
                    1,
                    1000,
                    step=1,
                    key=finetune.widget_key("log_interval"),
                    disabled=busy,
                    help=_(
                        "A point of the loss curve: the mean over this many iterations "
                        "(the tutorial: 10)."
                    ),
                ),
            )
            finetune.remember(
                "max_iters",
                st.number_input(
                    _("Stop after iterations (0: no limit)"),
                    0,
                    1_000_000,
                    step=10,
                    key=finetune.widget_key("max_iters"),
                    disabled=busy,
                    help=_(
                        "A short trial run: training stops here, evaluates and keeps the model."
                    ),
                ),
            )
            finetune.remember(
                "rois_per_image",
                st.number_input(
                    _("RoIs per image in the box head's loss"),
                    8,
                    2048,
                    step=8,
                    key=finetune.widget_key("rois_per_image"),
                    disabled=busy,
                    help=_("torchvision: 512. Images with few objects need far fewer."),
                ),
            )
            finetune.remember(
                "proposals",
                st.number_input(
                    _("Proposals per image (0: torchvision's)"),
                    0,
                    5000,
                    step=50,
                    key=finetune.widget_key("proposals"),
                    disabled=busy,
                    help=_(
                        "RPN proposals kept before and after NMS; torchvision keeps 2000 in "
                        "training, 1000 in testing."
                    ),
                ),
            )

    buttons = st.columns([1, 1, 3])
    if buttons[0].button(_("Start training"), key="ft:start", type="primary", disabled=busy):
        error = finetune.start(finetune.values())
        if error:
            st.warning(plain_message(error))
        else:
            st.rerun()
    if buttons[1].button(
        _("Cancel"),
        key="ft:cancel",
        disabled=not busy,
        help=_("Stop after the current step; the weights reached are kept and scored."),
    ):
        finetune.cancel()
        st.rerun()
    if finetune.cuda_here():
        where = _(
            "A training runs in a process of its own on the server with the GPU, so the pages "
            "(yours and other users') keep their speed. One training per user; when the server's "
            "training places are taken, yours waits in line."
        )
    else:
        threads = finetune.default_threads()
        where = ngettext(
            "A training runs in a process of its own on the server with {n} CPU thread, so the "
            "pages (yours and other users') keep their speed. One training per user; when the "
            "server's training places are taken, yours waits in line.",
            "A training runs in a process of its own on the server with {n} CPU threads, so the "
            "pages (yours and other users') keep their speed. One training per user; when the "
            "server's training places are taken, yours waits in line.",
            threads,
        ).format(n=threads)
    buttons[2].caption(where)

    @st.fragment(run_every=POLL_S if busy else None)
    def progress() -> None:
        """The run's progress, polled: training runs in its own process, not in this script.
        (A fragment's own reruns are outside the page's guard: it has its own.)"""
        with page_guard():
            show_progress()

    def show_progress() -> None:
        run = finetune.current()
        if run is None:
            return
        job = run.job
        if job.state == jobs.QUEUED:
            ahead = finetune.queue_position(run)
            queue_notice(ahead)
            return
        if not job.active and not run.taken:
            st.rerun()  # ended: the whole page reruns and keeps the model
        p = finetune.progress_of(run)
        outcome = run.outcome
        iteration = outcome.iterations if outcome is not None else p.iteration
        total = max(p.total_iterations, 1)
        state = outcome.state if outcome is not None else job.state
        label = _(STATE_NAMES.get(state, state))
        if job.active and p.iteration == 0:
            text = _("{phase}…").format(phase=finetune.phase_text(run) or _("starting"))
        else:
            text = _("iteration {iteration} / {total} · epoch {epoch} / {epochs} · {state}").format(
                iteration=iteration,
                total=p.total_iterations,
                epoch=p.epoch,
                epochs=p.epochs,
                state=label,
            )
        st.progress(min(iteration / total, 1.0), text=text)
        if job.state == jobs.FAILED:
            st.error(
                _(
                    "Training failed: {reason}. Your dataset and any model trained before are kept."
                ).format(reason=plain_message(finetune.failure_text(run)))
            )
        if p.note:
            st.caption(_("Starting weights: {note}").format(note=plain_message(p.note)))
        m = st.columns(5)
        m[0].metric(_("Loss"), f"{p.losses['loss']:.3f}" if "loss" in p.losses else "—")
        last_map = next((e[2] for e in reversed(p.evaluations) if e[2] is not None), None)
        m[1].metric("mAP@0.5", f"{last_map:.3f}" if last_map is not None else "—")
        m[2].metric(
            _("Time per iteration"),
            _("{s:.2f} s").format(s=p.seconds_per_iteration) if p.seconds_per_iteration else "—",
        )
        m[3].metric(_("Time left"), finetune.duration(p.eta_seconds) if job.active else "—")
        m[4].metric(_("Elapsed"), finetune.duration(p.elapsed_seconds))
        charts = st.columns(2)
        if p.loss_history:
            figure = finetune.run_figure(run, "losses", p.loss_history, loss_figure)
            charts[0].plotly_chart(figure, key="ft:losses")
        if p.evaluations:
            figure = finetune.run_figure(run, "map", p.evaluations, map_figure)
            charts[1].plotly_chart(figure, key="ft:map")
        if job.active:
            st.caption(
                _(
                    "Time left counts the training steps only (evaluations add to it). Training "
                    "goes on while you look at other pages."
                )
            )
        elif job.state in (jobs.DONE, jobs.CANCELLED) and run.outcome is not None:
            outcome = run.outcome
            score = f"{outcome.map50:.3f}" if outcome.map50 is not None else _("n/a")
            if outcome.state == "finished":
                done = _(
                    "Training finished after {n} iterations: the kept model (epoch {epoch}) "
                    "scores mAP@0.5 {score} on the validation images. See **Fine-tune: results**."
                )
            else:
                done = _(
                    "Training cancelled after {n} iterations: the kept model (epoch {epoch}) "
                    "scores mAP@0.5 {score} on the validation images. See **Fine-tune: results**."
                )
            st.success(done.format(n=outcome.iterations, epoch=outcome.model_epoch, score=score))

    progress()
