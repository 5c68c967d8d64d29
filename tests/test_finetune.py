"""Fine-tuning: the learning-rate rule and schedule, flips, a short run that learns, resume,
the background job, and torchrun with two processes whose evaluation equals a single-process
evaluation of its checkpoint. The model is torchvision's MobileNet Faster R-CNN on the shipped
(generated) dataset at 128 px, from random weights: nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from frcnn_core.datasets import DatasetError, load_dataset
from frcnn_core.detectors import checkpoint_info, load_detector
from frcnn_core.evaluate import evaluate_checkpoint
from frcnn_core.finetune import (
    FinetuneError,
    FinetuneSettings,
    TrainingJob,
    hflip,
    lr_factor,
    run_finetune,
)
from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset

MOBILENET = "fasterrcnn_mobilenet_v3_large_fpn"
ROOT = Path(__file__).resolve().parents[1]


def _quick(data: Path, out: Path, **changes) -> FinetuneSettings:
    """The smallest settings that still train the real model: 128 px, few RoIs and proposals."""
    base = FinetuneSettings(
        data=str(data),
        out=str(out),
        model=MOBILENET,
        weights="random",
        epochs=1,
        batch_size=2,
        lr=0.02,
        warmup_iters=5,
        clip_grad_norm=10.0,
        min_size=128,
        max_size=128,
        rois_per_image=32,
        proposals=100,
        eval_interval=1,
        checkpoint_interval=1,
        log_interval=2,
        device="cpu",
    )
    return replace(base, **changes)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Training in this process with one thread: on a CPU shared with other work, torch's
    OpenMP threads wait for each other at every small op and the run gets many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """8 images of 128 x 128 (6 train, 2 val)."""
    root = tmp_path_factory.mktemp("tiny")
    return make_dataset(root, SyntheticSettings(images=8, width=128, height=128, val_fraction=0.25))


def test_linear_lr_rule_and_schedule():
    s = FinetuneSettings(data="", out="")
    assert s.learning_rate(1) == pytest.approx(0.02 / 8)  # the tutorial's one-GPU value
    assert s.learning_rate(8) == pytest.approx(0.02)  # MMDetection's 8 GPUs x 2 images
    assert replace(s, batch_size=4).learning_rate(2) == pytest.approx(0.01)
    assert replace(s, lr=0.1).learning_rate(4) == 0.1
    s = replace(s, warmup_iters=10, warmup_factor=0.001, lr_steps=(8, 11), gamma=0.1)
    assert lr_factor(0, 1, s) == pytest.approx(0.001)
    assert lr_factor(5, 1, s) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(10, 1, s) == 1.0
    assert lr_factor(500, 8, s) == 1.0  # the step at 8 applies after epoch 8
    assert lr_factor(500, 9, s) == pytest.approx(0.1)
    assert lr_factor(500, 12, s) == pytest.approx(0.01)
    with pytest.raises(FinetuneError, match="unknown model"):
        replace(s, model="yolo").check()
    with pytest.raises(FinetuneError, match="batch size must be at least 1"):
        replace(s, batch_size=0).check()


def test_hflip_mirrors_boxes():
    image = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 15).expand(3, 2, 15)
    boxes = torch.tensor([[1.0, 0.0, 4.0, 2.0], [10.0, 1.0, 15.0, 2.0]])
    flipped, fboxes = hflip(image, boxes)
    # x -> W - x with W = 15: [1, 4] -> [11, 14], [10, 15] -> [0, 5].
    assert fboxes.tolist() == [[11.0, 0.0, 14.0, 2.0], [0.0, 1.0, 5.0, 2.0]]
    assert torch.equal(flipped[:, :, 0], image[:, :, -1])
    again, back = hflip(flipped, fboxes)
    assert torch.equal(again, image) and torch.equal(back, boxes)


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


LEARN_EPOCHS = 40  # x 4 steps of 2 images: 160 iterations


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One short run from random weights that learns: 8 images of 128 px with objects drawn as
    large as on the shipped 256 px images (the MobileNet's smallest anchor is 32 px), trained
    and evaluated on all of them (no split files). Measured here: mAP@0.5 0.012 -> 0.41."""
    base = tmp_path_factory.mktemp("learned")
    data = make_dataset(
        base / "data", SyntheticSettings(images=8, width=128, height=128, object_scale=2.0)
    )
    for name in ("train.txt", "val.txt"):
        (data / name).unlink()
    out = base / "run"
    settings = _quick(
        data,
        out,
        epochs=LEARN_EPOCHS,
        warmup_iters=10,
        rois_per_image=16,
        eval_interval=LEARN_EPOCHS,
        checkpoint_interval=LEARN_EPOCHS - 1,
        eval_at_start=True,
        log_interval=4,
        lr_steps=(),
    )
    return settings, run_finetune(settings)


@pytest.mark.slow
def test_short_run_learns_and_writes_checkpoints_and_logs(learned):
    settings, result = learned
    out = Path(settings.out)
    events = _events(out)
    train = [e for e in events if e["mode"] == "train"]
    val = [e for e in events if e["mode"] == "val"]
    total = 4 * LEARN_EPOCHS
    assert [e["iteration"] for e in train] == list(range(4, total + 1, 4))
    first = sum(e["loss"] for e in train[:2]) / 2
    last = sum(e["loss"] for e in train[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert [e["epoch"] for e in val] == [0, LEARN_EPOCHS]
    assert val[1]["map50"] > val[0]["map50"] + 0.15, (val[0]["map50"], val[1]["map50"])
    assert result.evaluation is not None and result.evaluation.map50 == val[1]["map50"]
    # Checkpoints: every 39 epochs and the last (resumable), and the best (inference only),
    # each loadable as the production pages load them.
    names = [p.name for p in result.checkpoints]
    assert names == [f"epoch_{LEARN_EPOCHS - 1}.pt", "best.pt", f"epoch_{LEARN_EPOCHS}.pt"]
    info = checkpoint_info(out / f"epoch_{LEARN_EPOCHS}.pt")
    assert info["class_names"] == ["__background__", "Car", "Pedestrian", "Cyclist"]
    assert info["model"] == MOBILENET and info["epoch"] == LEARN_EPOCHS
    assert info["iteration"] == total and info["map50"] == pytest.approx(val[1]["map50"])
    assert info["settings"]["lr"] == 0.02 and info["model_kwargs"]["min_size"] == 128
    assert info["optimizer"] and checkpoint_info(out / "best.pt")["optimizer"] is None
    detector = load_detector(weights=str(out / "best.pt"), device="cpu")
    assert detector.model.transform.min_size == (128,)
    again = evaluate_checkpoint(out / "best.pt", load_dataset(settings.data, split="all"), "cpu")
    assert again.to_dict() == result.evaluation.to_dict()
    # TensorBoard event files hold the same curves.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tf_logs"))
    acc.Reload()
    losses = acc.Scalars("train/loss")
    assert [s.step for s in losses] == [e["iteration"] for e in train]
    assert losses[0].value == pytest.approx(train[0]["loss"], rel=1e-5)
    assert [s.value for s in acc.Scalars("val/map50")] == pytest.approx([e["map50"] for e in val])


@pytest.mark.slow
def test_resume_continues_exactly(learned, tmp_path):
    settings, _ = learned
    out = Path(settings.out)
    resumed = run_finetune(
        replace(
            settings,
            out=str(tmp_path / "resumed"),
            resume=str(out / f"epoch_{LEARN_EPOCHS - 1}.pt"),
            evaluate=False,
        )
    )
    assert resumed.iterations == 4 * LEARN_EPOCHS and resumed.epochs == LEARN_EPOCHS
    a = torch.load(out / f"epoch_{LEARN_EPOCHS}.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / f"epoch_{LEARN_EPOCHS}.pt", weights_only=True)
    for key, value in a.items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=1e-5, atol=1e-6, msg=key)
    with pytest.raises(FinetuneError, match="holds no training state"):
        run_finetune(replace(settings, out=str(tmp_path / "x"), resume=str(out / "best.pt")))
    with pytest.raises(FinetuneError, match="is for fasterrcnn_mobilenet"):
        run_finetune(
            replace(
                settings,
                out=str(tmp_path / "x"),
                model="fasterrcnn_resnet50_fpn",
                resume=str(out / f"epoch_{LEARN_EPOCHS}.pt"),
            )
        )


@pytest.mark.slow
def test_training_job_reports_progress_and_cancels(tiny, tmp_path):
    job = TrainingJob(_quick(tiny, tmp_path / "job", epochs=50, log_interval=1))
    assert job.progress().state == "pending"
    job.start()
    deadline = time.monotonic() + 120
    while job.progress().iteration < 3 and time.monotonic() < deadline:
        assert job.progress().state == "running", job.progress().message
        time.sleep(0.2)
    job.cancel()
    assert job.wait(120)
    p = job.progress()
    assert p.state == "cancelled" and p.done
    assert p.iteration >= 3 and p.total_iterations == 150
    assert [i for i, _ in p.loss_history] == list(range(1, p.iteration + 1))
    assert p.seconds_per_iteration > 0 and p.eta_seconds == 0.0
    assert p.result is not None and p.result.cancelled
    assert (tmp_path / "job" / "cancelled.pt").is_file()
    assert checkpoint_info(tmp_path / "job" / "cancelled.pt")["iteration"] == p.iteration
    failed = TrainingJob(_quick(tmp_path / "nowhere", tmp_path / "bad"))
    failed.start()
    assert failed.wait(60)
    assert failed.progress().state == "failed"
    assert failed.progress().message == f"dataset folder {tmp_path / 'nowhere'} does not exist"


def test_bad_settings_and_data_are_one_line(tiny, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        run_finetune(_quick(tmp_path / "nowhere", tmp_path / "out"))
    empty = tmp_path / "empty"
    make_dataset(empty, SyntheticSettings(images=2, width=128, height=128))
    for label in (empty / "training" / "label_2").iterdir():
        label.write_text("DontCare 0 0 0 1 1 20 20 0 0 0 0 0 0 0\n")
    with pytest.raises(FinetuneError, match="training images hold no box of Car"):
        run_finetune(_quick(empty, tmp_path / "out"))
    with pytest.raises(FinetuneError, match="weights file not found"):
        run_finetune(_quick(tiny, tmp_path / "out", load_from=str(tmp_path / "none.pt")))


def _free_env() -> dict:
    env = dict(os.environ)
    env.pop("FRCNN_DEVICE", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.slow
def test_torchrun_two_processes_equals_single_process_evaluation(learned, tmp_path):
    """Two processes fine-tune the learned checkpoint for one epoch (--load-from), so that the
    gathered evaluation has real detections to agree on."""
    settings, _ = learned
    data = Path(settings.data)  # 8 images, no split files: train and evaluate on all
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--standalone",  # a free port on localhost
        "--nproc_per_node=2",
        "-m",
        "frcnn_core",
        "finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        MOBILENET,
        "--load-from",
        str(Path(settings.out) / "best.pt"),
        "--epochs",
        "1",
        "--lr",
        "0.005",
        "--min-size",
        "128",
        "--max-size",
        "128",
        "--rois-per-image",
        "16",
        "--proposals",
        "100",
        "--log-interval",
        "1",
        "--no-save-best",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(
        command, cwd=ROOT, env=_free_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # printed once, by rank 0
    # 8 training images, 2 processes x 2 images: 2 steps, each process seeing its half.
    assert report["iterations"] == 2 and report["epochs"] == 1
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files[:2] == ["epoch_1.pt", "metrics.jsonl"] and len(files) == 3
    assert files[2].startswith("tf_logs/events.out.tfevents.")
    events = _events(out)
    assert [e["mode"] for e in events] == ["train", "train", "val"]
    info = checkpoint_info(out / "epoch_1.pt")
    assert info["world_size"] == 2 and info["settings"]["lr"] == 0.005
    val = load_dataset(data, "kitti")  # all 8 images: the default without a val split
    assert len(val) == 8
    evaluation = evaluate_checkpoint(out / "epoch_1.pt", val, "cpu")
    single = evaluation.to_dict()
    gathered = {k: events[-1][k] for k in ("map50", "map", "per_class")}
    assert gathered["map50"] > 0.1 and sum(c.detections for c in evaluation.per_class) > 8
    assert _same(gathered, single)
    assert {k: report[k] for k in ("map50", "map", "per_class")} == gathered


def _same(a: dict, b: dict) -> bool:
    assert a["map50"] == pytest.approx(b["map50"], abs=1e-6)
    assert a["map"] == pytest.approx(b["map"], abs=1e-6)
    for name, ap in a["per_class"].items():
        for key in ("ap50", "ap"):
            if ap[key] is None:
                assert b["per_class"][name][key] is None
            else:
                assert ap[key] == pytest.approx(b["per_class"][name][key], abs=1e-6)
    return True


def test_auto_weights_without_coco_train_from_random_with_a_notice(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FRCNN_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))  # no cached COCO weights
    monkeypatch.delenv("FRCNN_DETECTOR_WEIGHTS", raising=False)
    events = []
    settings = _quick(tiny, tmp_path / "auto", weights="auto", max_iters=1, evaluate=False)
    result = run_finetune(settings, progress=events.append)
    start = events[0]
    assert start["mode"] == "start" and start["weights"] == "random"
    assert "COCO weights for fasterrcnn_mobilenet_v3_large_fpn were not found" in start["note"]
    assert "fetch-weights --model fasterrcnn_mobilenet_v3_large_fpn" in start["note"]
    assert result.iterations == 1 and result.evaluation is None
    with pytest.raises(FinetuneError, match=r"COCO weights for .* are not available"):
        run_finetune(replace(settings, weights="coco"))
