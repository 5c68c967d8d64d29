"""The command line's inputs and outputs under abuse: every refusal is one line and exit 2,
before anything blocks or grows; finished work is never lost when it cannot be written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import frcnn_core.cli as cli
from frcnn_core.safe_io import InputError, json_depth, parse_json, read_file, rescue
from frcnn_core.train import Trainer, heads_from_bytes

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "sample_images" / "coins.jpg"
BOXES = ROOT / "sample_images" / "coins.json"
SMALL = ["--set", "height=160", "--set", "width=160", "--weights", "random"]


def cli_run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if not line.startswith(("warning:", "note:"))]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and fragment in lines[0], err


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--boxes", "/dev/zero", "not a regular file"),
        ("--image", "/dev/zero", "not a regular file"),
        ("--boxes", "FIFO", "not a regular file"),
        ("--image", "FIFO", "not a regular file"),
        ("--boxes", "/", "is a folder"),
        ("--boxes", "/nonexistent/boxes.json", "does not exist"),
        ("--weights", "/dev/zero", "not a regular file"),
        ("--device", "cuda", "no CUDA GPU"),
        ("--device", "bogus", "is not a device"),
    ],
)
def test_unreadable_inputs_are_refused_at_once(capsys, fifo, option, value, fragment) -> None:
    value = str(fifo) if value == "FIFO" else value
    args = {"--image": str(IMAGE), "--boxes": str(BOXES)}
    extra = []
    if option in args:
        args[option] = value
    else:
        extra = [option, value]
    argv = ["summarize", "--image", args["--image"], "--boxes", args["--boxes"], *extra]
    if option == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out, err = cli_run(capsys, *argv)
    one_line_error(code, err, fragment)
    assert out == ""


def test_deeply_nested_json_is_one_line(capsys, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = cli_run(capsys, "summarize", "--image", str(IMAGE), "--boxes", str(deep))
    one_line_error(code, err, "nests deeper than 64 levels")


def test_a_large_random_file_as_weights_is_one_line(capsys, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(20 * 2**20))
    argv = ["summarize", "--image", str(IMAGE), "--boxes", str(BOXES), "--weights", str(junk)]
    code, _, err = cli_run(capsys, *argv)
    one_line_error(code, err, "is not a PyTorch weights file that can be read safely")
    assert "weights_only" not in err  # none of torch's advice about unsafe loading


@pytest.mark.parametrize("where", ["folder", "missing folder", "unwritable"])
def test_train_refuses_an_output_it_cannot_write_before_training(
    capsys, tmp_path: Path, monkeypatch, where: str
) -> None:
    out = {
        "folder": tmp_path,
        "missing folder": tmp_path / "nope" / "heads.pt",
        "unwritable": Path("/proc/heads.pt"),
    }[where]
    steps: list[int] = []
    monkeypatch.setattr(Trainer, "step", lambda self: steps.append(1))
    argv = ["train", "--image", str(IMAGE), "--boxes", str(BOXES), *SMALL, "--out", str(out)]
    code, _, err = cli_run(capsys, *argv)
    one_line_error(code, err, "--out")
    assert steps == []  # refused before any work


def test_trained_heads_are_kept_when_the_output_vanishes(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    """The folder is there when training starts and gone when it ends: the heads are written
    to the rescue folder, the command says where, and the file loads."""
    folder = tmp_path / "out"
    folder.mkdir()
    rescued = tmp_path / "rescued"
    monkeypatch.setenv("FRCNN_RESCUE_DIR", str(rescued))
    real_step = Trainer.step

    def step_then_lose_the_folder(self):
        result = real_step(self)
        shutil.rmtree(folder, ignore_errors=True)
        return result

    monkeypatch.setattr(Trainer, "step", step_then_lose_the_folder)
    argv = ["train", "--image", str(IMAGE), "--boxes", str(BOXES), *SMALL]
    argv += ["--iterations", "2", "--out", str(folder / "heads.pt")]
    code, out, err = cli_run(capsys, *argv)
    assert code == 2
    report = json.loads(out.strip().splitlines()[-1])
    kept = Path(report["weights"])
    assert kept.parent == rescued and kept.is_file()
    assert f"saved to {kept} instead" in err
    loaded = heads_from_bytes(kept.read_bytes())
    assert loaded.class_names  # a real heads file
    assert Path(report["log"]).is_file()


def test_read_file_limits_and_kinds(tmp_path: Path, fifo: Path) -> None:
    small = tmp_path / "a.txt"
    small.write_bytes(b"x" * 100)
    assert read_file(small, 100) == b"x" * 100
    with pytest.raises(InputError, match="is 101 bytes; the limit is 100 bytes"):
        small.write_bytes(b"x" * 101)
        read_file(small, 100)
    for bad in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(InputError):
            read_file(bad, 10)


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth('{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth('"\\"[["') == 0
    assert parse_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InputError, match="line 1, column"):
        parse_json(b'{"a": }')
    with pytest.raises(InputError, match="not UTF-8"):
        parse_json(b"\xff\xfe\x00")


def test_rescue_falls_back_when_its_first_choice_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FRCNN_RESCUE_DIR", "/proc/nowhere")
    monkeypatch.setenv("HOME", str(tmp_path))
    kept = rescue(b"data", "heads.pt")
    assert kept.read_bytes() == b"data"
    assert kept.name.endswith("heads.pt") and str(tmp_path) in str(kept)
