"""The staged run of torchvision's Faster R-CNN against the model's own forward, per model.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_production [--models NAME ...] [--repeat N] \
        [--device cpu|cuda|all] [--half] [--image IMG] [--min-size 800 --max-size 1333] \
        [--threads N]

For each model and device it prints the median wall time of ``model([image])`` and of
``frcnn_core.production.run_staged(model, image)`` (which keeps every intermediate), and the
staged run's overhead as their ratio (goal: under 1.1x); also the median of the per-repeat
ratios, which is steadier on a shared machine, and the time of the only work the staged run adds
to the model's (the per-level proposal funnel), which depends less on the machine's load.

Fair comparison:

- Same model object, same input tensor, both under ``torch.inference_mode``; one warm-up of
  each first (allocator, oneDNN / cuDNN algorithm choice), then both run in every repeat, in
  alternating order, so drift in the machine's load and order effects hit both alike.
- On CUDA each timing ends with ``torch.cuda.synchronize()``; the staged run does not
  synchronise between its stages (``sync=False``), as the app runs it.
- The last repeat's detections are compared: the script exits with status 1 when the staged
  run's boxes, scores or labels differ from the model's.

Weights: ``auto`` without download (the cached COCO weights if present, else random). Timing
depends on them only through how many class scores pass 0.05 into the final NMS.
Input: ``sample_images/zebras.jpg`` (1333 x 2000; resized to 800 x 1200 by the transform).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

from frcnn_core.detectors import MODELS, load_detector
from frcnn_core.device import device_name
from frcnn_core.image import load_image
from frcnn_core.production import image_tensor, run_staged

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT / "sample_images" / "zebras.jpg"


def _timed(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, out


def bench(name: str, device: torch.device, args: argparse.Namespace, pixels) -> dict:
    kwargs = {}
    if args.min_size:
        kwargs["min_size"] = args.min_size
    if args.max_size:
        kwargs["max_size"] = args.max_size
    det = load_detector(name, "auto", device=device, allow_download=False, half=args.half, **kwargs)
    model = det.model
    image = image_tensor(pixels, device, det.dtype)
    forward_s, staged_s, ratios, funnel_s = [], [], [], []
    with torch.inference_mode():
        model([image])
        run_staged(model, image)
        for i in range(args.repeat):
            # Alternate which goes first, so an order effect (allocator, caches) cancels out.
            if i % 2 == 0:
                t_forward, expected = _timed(lambda: model([image])[0], device)
                t_staged, run = _timed(lambda: run_staged(model, image), device)
            else:
                t_staged, run = _timed(lambda: run_staged(model, image), device)
                t_forward, expected = _timed(lambda: model([image])[0], device)
            forward_s.append(t_forward)
            staged_s.append(t_staged)
            funnel_s.append(run.seconds["proposal_funnel"])
            ratios.append(t_staged / t_forward)
    found = run.detections
    equal = (
        torch.equal(expected["boxes"], found.boxes_original)
        and torch.equal(expected["scores"], found.scores)
        and torch.equal(expected["labels"], found.labels)
    )
    forward, staged = statistics.median(forward_s), statistics.median(staged_s)
    return {
        "model": name,
        "device": device.type,
        "dtype": str(det.dtype).removeprefix("torch."),
        "weights": det.weights,
        "input": "x".join(str(s) for s in run.input.input_size),
        "forward_ms": forward * 1000,
        "staged_ms": staged * 1000,
        "ratio": staged / forward,
        "ratio_median": statistics.median(ratios),
        "funnel_ms": statistics.median(funnel_s) * 1000,
        "detections": len(found),
        "equal": equal,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--device",
        default="all",
        choices=("cpu", "cuda", "all"),
        help="all: the CPU, and CUDA when present",
    )
    parser.add_argument("--half", action="store_true", help="float16 on CUDA")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--min-size", type=int, default=None, help="transform min (800)")
    parser.add_argument("--max-size", type=int, default=None, help="transform max (1333)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is steadier on a busy machine)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        print("error: CUDA is not available on this machine", file=sys.stderr)
        return 2
    pixels = load_image(args.image).pixels
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {platform.python_version()}"
    )
    for device in devices:
        print(f"{device.type}: {device_name(device)}")
    print(f"image {args.image} ({pixels.shape[1]} x {pixels.shape[0]}), median of {args.repeat}")
    print()
    header = (
        f"{'model':34} {'device':6} {'dtype':8} {'weights':7} {'input':9} "
        f"{'forward ms':>10} {'staged ms':>10} {'ratio':>6} {'med r':>6} {'extra ms':>8} "
        f"{'dets':>5} equal"
    )
    print(header)
    print("-" * len(header))
    all_equal = True
    for device in devices:
        for name in args.models:
            r = bench(name, device, args, pixels)
            all_equal &= r["equal"]
            print(
                f"{r['model']:34} {r['device']:6} {r['dtype']:8} {r['weights'][:7]:7} "
                f"{r['input']:9} {r['forward_ms']:10.1f} {r['staged_ms']:10.1f} "
                f"{r['ratio']:5.3f}x {r['ratio_median']:5.3f}x {r['funnel_ms']:8.1f} "
                f"{r['detections']:5d} "
                f"{'yes' if r['equal'] else 'NO'}",
                flush=True,
            )
    print()
    print("ratio: median staged / median forward; med r: median of the per-repeat ratios")
    print(
        "extra ms: the one step the staged run adds to the model's work, the per-level proposal "
        "funnel (on CUDA without a sync, so only indicative there)"
    )
    if not all_equal:
        print("error: the staged run's detections differ from model(images)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
