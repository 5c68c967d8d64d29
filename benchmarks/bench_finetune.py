"""Training throughput of ``python -m frcnn_core finetune``: images per second for the MobileNet
and the ResNet-50 FPN Faster R-CNN, in one process and in two (``torchrun --nproc_per_node=2``)
on the CPU, and on the GPU when there is one; the scaling ratio of each in the same run.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_finetune [--size 320] [--iters 8] [--warmup 3]
        [--models fasterrcnn_mobilenet_v3_large_fpn fasterrcnn_resnet50_fpn] [--batch-size 2]

Every figure comes from the real command: the script writes the shipped dataset (``--size``
pixels a side, the model's ``min_size = max_size = --size``), runs ``finetune`` for
``--warmup + --iters`` iterations with a log line every iteration and no evaluation, starting
(``--load-from``) from random weights saved in the COCO checkpoint's structure (frozen
BatchNorm, conv1 and the first backbone stage frozen), so that the same layers train as when
fine-tuning from COCO; it reads ``metrics.jsonl``: images / s = images per step (batch size x
processes) / the median seconds per iteration after the warm-up iterations (which pay for memory
allocation and kernel selection). The training settings are torchvision's (512 RoIs per image,
its proposal counts): only the image size is small.

Processes and threads: one process uses every core (torch's default); torchrun gives each of
its processes one thread (``OMP_NUM_THREADS=1``, torchrun's default), so on an N-core CPU two
processes use two of them. "ratio" is images / s over the one-process figure of the same model
and device: the scaling from one process to two, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn")


def coco_shaped_weights(model: str, path: Path) -> Path:
    """Random weights of ``model`` with COCO's 91 classes, as a detector checkpoint."""
    from frcnn_core.detectors import COCO_CLASS_NAMES, build_model, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(path, build_model(model, len(COCO_CLASS_NAMES)), model, COCO_CLASS_NAMES)
    return path


def run_once(
    data: Path,
    weights: Path,
    out: Path,
    model: str,
    device: str,
    processes: int,
    args: argparse.Namespace,
) -> dict:
    """One ``finetune`` run; returns its throughput figures."""
    finetune = [
        "-m",
        "frcnn_core",
        "finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        model,
        "--load-from",
        str(weights),
        "--epochs",
        "1000",
        "--max-iters",
        str(args.warmup + args.iters),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        "0.001",
        "--min-size",
        str(args.size),
        "--max-size",
        str(args.size),
        "--log-interval",
        "1",
        "--no-eval",
        "--device",
        device,
    ]
    if processes == 1:
        command = [sys.executable, *finetune]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        command = [torchrun, "--standalone", f"--nproc_per_node={processes}", *finetune]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise SystemExit(f"{model} on {device} x{processes} failed: {' | '.join(tail)}")
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [e["time"] for e in events if e["mode"] == "train"][args.warmup :]
    seconds = statistics.median(times)
    images = args.batch_size * processes
    return {
        "model": model,
        "device": device,
        "processes": processes,
        "threads": torch.get_num_threads() if processes == 1 else 1,
        "seconds_per_iteration": seconds,
        "images_per_s": images / seconds,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--size", type=int, default=320, help="image side and model input size")
    parser.add_argument("--iters", type=int, default=8, help="measured iterations")
    parser.add_argument("--warmup", type=int, default=3, help="iterations left out")
    parser.add_argument("--batch-size", type=int, default=2, help="images per process")
    parser.add_argument("--processes", type=int, default=2, help="torchrun processes on the CPU")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads in one process"
    )
    cuda = torch.cuda.is_available()
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}")
    work = Path(tempfile.mkdtemp(prefix="bench_finetune."))
    try:
        images = max(16, 2 * args.batch_size * args.processes * (args.iters + args.warmup))
        data = make_dataset(
            work / "data", SyntheticSettings(images=images, width=args.size, height=args.size)
        )
        rows = []
        runs = [("cpu", 1), ("cpu", args.processes)]
        if cuda:
            runs.append(("cuda", 1))
            if torch.cuda.device_count() > 1:
                runs.append(("cuda", torch.cuda.device_count()))
        for model in args.models:
            base: dict[str, float] = {}
            weights = coco_shaped_weights(model, work / f"{model}.pt")
            for device, processes in runs:
                out = work / f"{model}-{device}-{processes}"
                row = run_once(data, weights, out, model, device, processes, args)
                base.setdefault(device, row["images_per_s"])
                row["ratio"] = row["images_per_s"] / base[device]
                rows.append(row)
                shutil.rmtree(out, ignore_errors=True)
                print(
                    f"  {model} {device} x{processes}: {row['images_per_s']:.2f} images/s",
                    file=sys.stderr,
                    flush=True,
                )
        print(
            f"\ntraining throughput, {args.size} x {args.size} images, batch {args.batch_size} "
            f"per process, median of {args.iters} iterations after {args.warmup}"
        )
        header = f"{'model':36s} {'device':6s} {'procs':>5s} {'thr/proc':>8s} "
        print(header + f"{'s/iter':>8s} {'images/s':>9s} {'ratio':>6s}")
        for r in rows:
            print(
                f"{r['model']:36s} {r['device']:6s} {r['processes']:5d} {r['threads']:8d} "
                f"{r['seconds_per_iteration']:8.3f} {r['images_per_s']:9.2f} {r['ratio']:6.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
