"""Fine-tune, step 2: the tutorial's training settings, a training run in the background, and its
live loss and mAP curves."""

from __future__ import annotations

import streamlit as st

from explorer import finetune, jobs
from explorer.text import plain_message
from explorer.views.finetune import loss_figure, map_figure
from explorer.widgets import intro, page_guard
from frcnn_core.datasets import DatasetError
from frcnn_core.detectors import MODELS
from frcnn_core.finetune import BASE_BATCH, BASE_LR

POLL_S = 1.5  # seconds between looks at a running training
START_NAMES = {finetune.WEIGHTS_COCO: "COCO weights", finetune.WEIGHTS_RANDOM: "random weights"}


intro(
    "Fine-tune: train",
    "The tutorial's recipe on torchvision's Faster R-CNN: start from the COCO checkpoint, "
    "replace the box predictor by one for your classes, and train with SGD (momentum 0.9, "
    "weight decay 0.0001) at the learning rate of the **linear rule**: 0.02 for 16 images a "
    "step, scaled to your batch, so 2 images on one device train at 0.02 / 8 = 0.0025. The "
    "tutorial trains 12 epochs and lowers the rate tenfold after epochs 8 and 11. Every few "
    "epochs the model is scored on the validation images: **mAP@0.5**, the tutorial's "
    "metric. Training runs on the server in the background: switch pages, come back, it goes "
    "on.",
)

with page_guard():
    try:
        data = finetune.ensure_dataset()
    except (DatasetError, OSError) as exc:
        st.error(f"No dataset to train on: {plain_message(str(exc))}")
        st.stop()
    run = finetune.current()
    busy = finetune.running()
    st.markdown(
        plain_message(f"Training on {data.describe()}.")
        + " Change it on the **Fine-tune: dataset** page."
    )

    st.subheader("Settings")
    recipes = st.columns([1, 1, 3])
    recipes[0].button(
        "Tutorial's settings",
        on_click=finetune.apply,
        args=(finetune.TUTORIAL,),
        disabled=busy,
        help="ResNet-50 FPN from COCO, 12 epochs of 2 images a step at the linear rule's "
        "0.0025, decay after epochs 8 and 11, images resized to 800-1333 pixels.",
    )
    recipes[1].button(
        "Quick CPU recipe",
        on_click=finetune.apply,
        args=(finetune.quick_recipe(),),
        disabled=busy,
        type="primary",
        help="Measured on the shipped dataset on a busy 2-core CPU: the MobileNet model from "
        "random weights at the images' 256 pixels, 4 images a step at 0.02 with a 50-iteration "
        "warm-up and clipping, 6 epochs: mAP@0.5 on the validation images goes from 0.0007 to "
        "0.86 in about 7 minutes.",
    )
    recipes[2].caption(
        "The tutorial's settings need a GPU (or hours on a CPU, and COCO weights). The quick "
        "CPU recipe trains the small MobileNet model from scratch in minutes on the shipped "
        "dataset."
    )

    cols = st.columns(3)
    with cols[0].container(border=True):
        st.markdown("**Model**")
        model = finetune.remember(
            "model",
            st.selectbox(
                "Detector",
                list(MODELS),
                format_func=finetune.MODEL_NAMES.__getitem__,
                key=finetune.widget_key("model"),
                disabled=busy,
                help="ResNet-50 FPN is built like the tutorial's MMDetection model; v2 is more "
                "accurate; MobileNetV3-Large FPN is several times faster on a CPU.",
            ),
        )
        start_from = finetune.remember(
            "start",
            st.radio(
                "Start from",
                [finetune.WEIGHTS_COCO, finetune.WEIGHTS_RANDOM],
                format_func=START_NAMES.__getitem__,
                key=finetune.widget_key("start"),
                horizontal=True,
                disabled=busy,
                help="COCO weights already know what objects look like (the tutorial starts "
                "there); random weights must learn everything from your images.",
            ),
        )
        if not finetune.coco_available(model):
            st.warning(
                f"COCO weights for {finetune.MODEL_NAMES[model]} are not on this server, so "
                "training starts from **random weights**: the model must learn what objects "
                "look like from your images alone, and mAP rises far more slowly. To get them, run "
                f"`python -m frcnn_core fetch-weights --model {model}` where a network exists.",
                icon=":material/warning:",
            )
        elif start_from == finetune.WEIGHTS_RANDOM:
            st.caption("Random weights, as asked: COCO weights are on this server too.")
        finetune.remember(
            "epochs",
            st.number_input(
                "Epochs", 1, 200, step=1, key=finetune.widget_key("epochs"), disabled=busy
            ),
        )
        batch = finetune.remember(
            "batch_size",
            st.number_input(
                "Images per step (batch size)",
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
                "Seed",
                0,
                2**31 - 1,
                step=1,
                key=finetune.widget_key("seed"),
                disabled=busy,
                help="Seeds the new layers' weights, the order of the images and the flips: "
                "the same seed and settings train the same model.",
            ),
        )

    with cols[1].container(border=True):
        st.markdown("**Learning rate**")
        rule = finetune.remember(
            "linear_rule",
            st.toggle(
                "Linear rule",
                key=finetune.widget_key("linear_rule"),
                disabled=busy,
                help="The rate grows with the images per step: twice the batch, twice the "
                "rate (Goyal et al., 2017). MMDetection's 0.02 is for 8 GPUs × 2 images.",
            ),
        )
        rule_lr = BASE_LR * int(batch) / BASE_BATCH
        if rule:
            st.markdown(
                f"{BASE_LR:g} × {int(batch)} image{'s' if batch != 1 else ''} per step × 1 "
                f"process ÷ {BASE_BATCH} = **{rule_lr:.4g}**"
            )
        else:
            finetune.remember(
                "lr",
                st.number_input(
                    "Learning rate",
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
                "Warm-up iterations",
                0,
                10000,
                step=10,
                key=finetune.widget_key("warmup_iters"),
                disabled=busy,
                help="The rate rises linearly from a thousandth of its value over these "
                "first iterations (the tutorial: none).",
            ),
        )
        finetune.remember(
            "lr_steps",
            st.multiselect(
                "Lower the rate after epochs",
                list(range(1, 201)),
                key=finetune.widget_key("lr_steps"),
                disabled=busy,
                help="Step decay: after each of these epochs the rate is multiplied by the "
                "factor below (the tutorial: after 8 and 11).",
            ),
        )
        finetune.remember(
            "gamma",
            st.number_input(
                "Decay factor",
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
                "Momentum",
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
                "Weight decay",
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
                "Clip gradients to norm (0: off)",
                0.0,
                1000.0,
                step=1.0,
                key=finetune.widget_key("clip_grad_norm"),
                disabled=busy,
                help="Scales the gradients down when their total norm exceeds this: keeps the "
                "first steps from random weights from throwing the model off.",
            ),
        )

    with cols[2].container(border=True):
        st.markdown("**Images and evaluation**")
        finetune.remember(
            "hflip",
            st.slider(
                "Horizontal flip probability",
                0.0,
                1.0,
                step=0.05,
                key=finetune.widget_key("hflip"),
                disabled=busy,
                help="Each training image is mirrored with this probability (the tutorial: "
                "0.5): twice the views of every object.",
            ),
        )
        size = st.columns(2)
        finetune.remember(
            "min_size",
            size[0].number_input(
                "Shorter side",
                64,
                1600,
                step=32,
                key=finetune.widget_key("min_size"),
                disabled=busy,
                help="Images are resized so their shorter side is this many pixels (the "
                "tutorial: 800), unless the longer side would exceed its limit.",
            ),
        )
        finetune.remember(
            "max_size",
            size[1].number_input(
                "Longer side at most",
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
                "Mixed precision (CUDA only)",
                key=finetune.widget_key("amp"),
                disabled=busy or not finetune.cuda_here(),
                help="float16 where it is safe: faster on a GPU, half the activation memory.",
            ),
        )
        every = st.columns(2)
        finetune.remember(
            "eval_interval",
            every[0].number_input(
                "Evaluate every (epochs)",
                1,
                200,
                step=1,
                key=finetune.widget_key("eval_interval"),
                disabled=busy,
                help="mAP on the validation images; the last epoch is always evaluated, and "
                "the best model (by mAP@0.5) is kept.",
            ),
        )
        finetune.remember(
            "checkpoint_interval",
            every[1].number_input(
                "Save every (epochs)",
                1,
                200,
                step=1,
                key=finetune.widget_key("checkpoint_interval"),
                disabled=busy,
                help="Resumable checkpoints (weights and optimizer) in the run's folder on the "
                "server; the last epoch is always saved. They are removed when you start your "
                "next training; the best model is kept.",
            ),
        )
        finetune.remember(
            "eval_at_start",
            st.toggle(
                "Evaluate before training too",
                key=finetune.widget_key("eval_at_start"),
                disabled=busy,
                help="The untrained model's mAP, as a baseline for the curve.",
            ),
        )
        with st.expander("More"):
            finetune.remember(
                "log_interval",
                st.number_input(
                    "Log every (iterations)",
                    1,
                    1000,
                    step=1,
                    key=finetune.widget_key("log_interval"),
                    disabled=busy,
                    help="A point of the loss curve: the mean over this many iterations "
                    "(the tutorial: 10).",
                ),
            )
            finetune.remember(
                "max_iters",
                st.number_input(
                    "Stop after iterations (0: no limit)",
                    0,
                    1_000_000,
                    step=10,
                    key=finetune.widget_key("max_iters"),
                    disabled=busy,
                    help="A short trial run: training stops here, evaluates and keeps the model.",
                ),
            )
            finetune.remember(
                "rois_per_image",
                st.number_input(
                    "RoIs per image in the box head's loss",
                    8,
                    2048,
                    step=8,
                    key=finetune.widget_key("rois_per_image"),
                    disabled=busy,
                    help="torchvision: 512. Images with few objects need far fewer.",
                ),
            )
            finetune.remember(
                "proposals",
                st.number_input(
                    "Proposals per image (0: torchvision's)",
                    0,
                    5000,
                    step=50,
                    key=finetune.widget_key("proposals"),
                    disabled=busy,
                    help="RPN proposals kept before and after NMS; torchvision keeps 2000 in "
                    "training, 1000 in testing.",
                ),
            )

    buttons = st.columns([1, 1, 3])
    if buttons[0].button("Start training", type="primary", disabled=busy):
        error = finetune.start(finetune.values())
        if error:
            st.warning(plain_message(error))
        else:
            st.rerun()
    if buttons[1].button(
        "Cancel",
        disabled=not busy,
        help="Stop after the current step; the weights reached are kept and scored.",
    ):
        finetune.cancel()
        st.rerun()
    where = "the GPU" if finetune.cuda_here() else f"{finetune.default_threads()} CPU thread(s)"
    buttons[2].caption(
        f"A training runs in a process of its own on the server with {where}, so the pages "
        "(yours and other users') keep their speed. One training per user; when the server's "
        "training places are taken, yours waits in line."
    )

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
            st.info(
                f"Waiting for the server: {ahead} training{'s' if ahead != 1 else ''} ahead of "
                "yours. Yours starts as soon as one ends.",
                icon=":material/hourglass_top:",
            )
            return
        if not job.active and not run.taken:
            st.rerun()  # ended: the whole page reruns and keeps the model
        p = finetune.progress_of(run)
        outcome = run.outcome
        iteration = outcome.iterations if outcome is not None else p.iteration
        total = max(p.total_iterations, 1)
        label = {
            jobs.RUNNING: "training",
            jobs.DONE: "finished",
            jobs.CANCELLED: "cancelled",
            jobs.FAILED: "failed",
        }.get(job.state, job.state)
        if outcome is not None:
            label = outcome.state
        phase = job.progress.get("phase", "")
        if job.active and p.iteration == 0:
            text = f"{phase or 'starting'}…"
        else:
            text = f"iteration {iteration} / {p.total_iterations} · epoch {p.epoch} / {p.epochs}"
            text += f" · {label}"
        st.progress(min(iteration / total, 1.0), text=text)
        if job.state == jobs.FAILED:
            st.error(
                f"Training failed: {plain_message(job.error or 'unknown error')}. Your "
                "dataset and any model trained before are kept."
            )
        if p.note:
            st.caption(f"Starting weights: {plain_message(p.note)}")
        m = st.columns(5)
        m[0].metric("Loss", f"{p.losses['loss']:.3f}" if "loss" in p.losses else "—")
        last_map = next((e[2] for e in reversed(p.evaluations) if e[2] is not None), None)
        m[1].metric("mAP@0.5", f"{last_map:.3f}" if last_map is not None else "—")
        m[2].metric(
            "Time per iteration",
            f"{p.seconds_per_iteration:.2f} s" if p.seconds_per_iteration else "—",
        )
        m[3].metric("Time left", finetune.duration(p.eta_seconds) if job.active else "—")
        m[4].metric("Elapsed", finetune.duration(p.elapsed_seconds))
        charts = st.columns(2)
        if p.loss_history:
            figure = finetune.run_figure(run, "losses", p.loss_history, loss_figure)
            charts[0].plotly_chart(figure, key="ft:losses")
        if p.evaluations:
            figure = finetune.run_figure(run, "map", p.evaluations, map_figure)
            charts[1].plotly_chart(figure, key="ft:map")
        if job.active:
            st.caption(
                "Time left counts the training steps only (evaluations add to it). Training "
                "goes on while you look at other pages."
            )
        elif job.state in (jobs.DONE, jobs.CANCELLED) and run.outcome is not None:
            outcome = run.outcome
            score = f"{outcome.map50:.3f}" if outcome.map50 is not None else "n/a"
            st.success(
                f"Training {'finished' if outcome.state == 'finished' else 'cancelled'} after "
                f"{outcome.iterations} iterations: the kept model (epoch {outcome.model_epoch}) "
                f"scores mAP@0.5 {score} on the validation images. See **Fine-tune: results**."
            )

    progress()
