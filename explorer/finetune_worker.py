"""A fine-tuning run of the app in a process of its own: ``python -m explorer.finetune_worker RUN``.

The app's Fine-tune pages start this process (:mod:`explorer.finetune`) rather than training in
the server's own threads, for four reasons:

- **Its own CPU threads.** ``torch.set_num_threads`` is process-wide: set in a server thread, it
  would change every other session's forwards too. Here the run gets exactly ``threads`` intra-op
  threads (the app's ``FRCNN_FINETUNE_THREADS``), as ``finetune --threads`` does on the command
  line. On a CPU that other work keeps busy, torch's default (one thread per core) made training
  10-15x slower: its threads wait for each other at every small op.
- **Other users' pages keep their turn.** The training loop never holds the server's GIL or its
  forward slots (:data:`explorer.runtime.FORWARDS`), so a page of another session computes as
  fast as the cores allow while a training runs.
- **Its memory goes back** when it ends (a ResNet-50 FPN at 800 px takes several GB to train),
  and a crash or an out-of-memory kill ends the run, never the server.
- **Cancel is a file**: ``RUN/cancel``; the run stops after the current iteration and keeps the
  weights reached. It also stops when the server that started it is gone.

Nothing here imports streamlit. Files under ``RUN`` (the run's folder):

- ``spec.json`` (written by the app): ``{"settings": FinetuneSettings.to_dict(), "threads": n,
  "parent": pid, "lang": "en" | "ko"}``: ``lang`` is the session's language when the run
  started, the language of the messages made here (the failure's ``message``, the starting
  weights' ``note``), since the page cannot translate a message once it is made;
- ``events.jsonl``: every progress event of :func:`frcnn_core.finetune.run_finetune`, a JSON line
  each (``{"mode": "start" | "train" | "val", ...}``), flushed as it comes;
- ``predictions.json``: the kept model's detections on the validation images, in COCO results
  format (:func:`frcnn_core.evaluate.predictions_to_json`), for the Results page;
- ``result.json`` (last, atomically): ``{"state": "finished" | "cancelled" | "failed", "message",
  "model", "model_epoch", "map50", "map", "iterations", "epochs", "seconds", "note"}``;
- ``out/``: the run's ``metrics.jsonl``, ``tf_logs/`` and the kept model: ``best.pt`` (the best
  mAP@0.5, weights only) or, without one, ``final.pt`` (the last weights, weights only). The
  resumable epoch checkpoints (twice the size: they hold the optimizer) are removed once the
  kept model is written: the app offers no resume, and a class of students would fill the disk.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

SPEC = "spec.json"
EVENTS = "events.jsonl"
RESULT = "result.json"
PREDICTIONS = "predictions.json"
CANCEL = "cancel"
OUT = "out"


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``: a reader
    never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def settings_from_dict(data: dict):
    """A :class:`frcnn_core.finetune.FinetuneSettings` from its ``to_dict()`` (lists back to
    tuples; unknown keys refused)."""
    from frcnn_core.finetune import FinetuneSettings
    from frcnn_core.i18n import _

    known = {f.name for f in fields(FinetuneSettings)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(_("unknown settings {names}").format(names=sorted(unknown)))
    values = dict(data)
    if values.get("classes") is not None:
        values["classes"] = tuple(values["classes"])
    if "lr_steps" in values:
        values["lr_steps"] = tuple(values["lr_steps"])
    return FinetuneSettings(**values)


class CancelFlag:
    """``run_finetune``'s cancel event, read from the run's folder: set once ``RUN/cancel``
    exists, or once the process that started this one has gone (this process is then an
    orphan: nobody would ever read its results)."""

    def __init__(self, run: Path, parent: int | None) -> None:
        self.path = run / CANCEL
        self.parent = parent

    def is_set(self) -> bool:
        if self.parent is not None and os.getppid() != self.parent:
            return True
        return self.path.exists()


def _weights_only(source: Path, target: Path) -> Path:
    """A copy of a resumable checkpoint without its optimizer and scaler state."""
    import torch

    obj = torch.load(source, map_location="cpu", weights_only=True)
    for key in ("optimizer", "scaler"):
        obj.pop(key, None)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _val_dataset(settings):
    from frcnn_core.datasets import has_split, load_dataset, parse_classes

    split = "val" if has_split(Path(settings.data), settings.format, "val") else "all"
    return load_dataset(settings.data, settings.format, parse_classes(settings.classes), split)


def run(folder: Path) -> dict:
    """Train as ``RUN/spec.json`` says; returns what goes into ``result.json``."""
    import torch

    from frcnn_core.detectors import checkpoint_info
    from frcnn_core.evaluate import evaluate_checkpoint, predictions_to_json
    from frcnn_core.finetune import run_finetune
    from frcnn_core.i18n import normalise, set_language

    spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
    set_language(normalise(spec.get("lang")) or "en")  # this process's messages: the session's
    settings = settings_from_dict(spec["settings"])
    threads = int(spec.get("threads") or 1)
    torch.set_num_threads(max(threads, 1))
    note = ""
    with open(folder / EVENTS, "a", encoding="utf-8") as events:

        def progress(event: dict) -> None:
            nonlocal note
            if event.get("mode") == "start":
                note = str(event.get("note", ""))
            events.write(json.dumps(event) + "\n")
            events.flush()

        result = run_finetune(
            settings, progress=progress, cancel=CancelFlag(folder, spec.get("parent"))
        )
    out = Path(settings.out)
    model = result.best
    if model is None:
        last = result.checkpoints[-1] if result.checkpoints else None
        model = _weights_only(last, out / "final.pt") if last is not None else None
    report = {
        "state": "cancelled" if result.cancelled else "finished",
        "message": "",
        "model": str(model) if model is not None else None,
        "model_epoch": None,
        "map50": None,
        "map": None,
        "iterations": result.iterations,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "note": note,
        "notes": list(result.notes),
    }
    if model is None:
        return report
    report["model_epoch"] = checkpoint_info(model).get("epoch")
    # The last evaluation is of the final weights: it is the kept model's when that is them.
    val = _val_dataset(settings)
    evaluation = result.evaluation
    if evaluation is None or result.cancelled or report["model_epoch"] != result.epochs:
        evaluation = evaluate_checkpoint(model, val, device=settings.device)
    write_json_atomic(folder / PREDICTIONS, predictions_to_json(val, evaluation.predictions))
    report["map50"], report["map"] = evaluation.map50, evaluation.map
    for path in result.checkpoints:
        if path != model and path.name != "best.pt":
            path.unlink(missing_ok=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m explorer.finetune_worker RUN_FOLDER", file=sys.stderr)
        return 2
    folder = Path(args[0])
    started = time.perf_counter()
    try:
        report = run(folder)
        status = 0
    except (ValueError, OSError) as exc:  # DatasetError, FinetuneError, a full disk, ...
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report = {"state": "failed", "message": line}
        status = 2
    except Exception as exc:  # the page must show a line, whatever happened
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        report = {"state": "failed", "message": text}
        status = 1
        import traceback

        traceback.print_exc()
    report.setdefault("seconds", time.perf_counter() - started)
    write_json_atomic(folder / RESULT, report)
    return status


if __name__ == "__main__":
    sys.exit(main())
