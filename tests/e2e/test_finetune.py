"""The Fine-tune pages in a real browser: a zip dataset is uploaded and shown, a short training
runs to the end in the background and its results show; meanwhile a second browser (another
user) moves a slider on a tutorial page and gets its answer within :data:`RESPONSE_BOUND_S`.

Run: ``.venv/bin/python -m pytest tests/e2e/test_finetune.py -m browser``. Screenshots of the
three pages go to ``test-output/e2e/finetune-*.png``.
"""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import AppServer

CHROMIUM = "/usr/bin/chromium"  # as in conftest.py
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
    ),
]
pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) is missing")

from playwright.sync_api import expect  # noqa: E402

from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset  # noqa: E402
from tests.e2e.conftest import StreamlitPage  # noqa: E402

# The other user's slider answer (key press to the new text shown, both browsers on the same
# 2 cores as the server), measured here with other engineers' suites keeping the machine at a
# load of 8-12: 4-11 s with no training, 11-23 s while one ran. The server's share of it is
# small (tests/test_page_finetune.py: the page's rerun took 0.2 s either way); the rest is the
# two browsers drawing on the shared cores. A training that blocked the server would answer
# only after it ended: the test also checks that the training was still running then.
RESPONSE_BOUND_S = 30.0
ITERATIONS = 20
LONG_MS = 240_000
IOU_SLIDER = "Positive IoU ≥"


def tiny_zip(tmp_path: Path) -> Path:
    """8 generated images of 128 px (6 train, 2 val) in the KITTI layout, zipped."""
    root = make_dataset(
        tmp_path / "tiny",
        SyntheticSettings(images=8, width=128, height=128, val_fraction=0.25, object_scale=2.0),
    )
    target = tmp_path / "tiny.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, Path("tiny") / path.relative_to(root))
    return target


def slider_answer_s(user: StreamlitPage, value: str) -> float:
    """Press ArrowLeft on the labelling page's positive-IoU slider and time the answer: from the
    key press until the page's text shows the new threshold and the app is idle."""
    thumb = user.slider(IOU_SLIDER)
    shown = user.slider_value_locator(IOU_SLIDER)

    def step() -> None:
        thumb.press("ArrowLeft")
        expect(shown).to_have_text(value)

    started = time.perf_counter()
    user.act(step, f"reach IoU ≥ {value}")
    return time.perf_counter() - started


def test_finetune_pages_train_and_other_users_stay_responsive(
    app_server: AppServer, chromium: Any, tmp_path: Path
) -> None:
    trainer_context = chromium.new_context(viewport={"width": 1500, "height": 1100})
    other_context = chromium.new_context(viewport={"width": 1500, "height": 1100})
    started = time.perf_counter()

    def mark(what: str) -> None:
        print(f"\n{time.perf_counter() - started:6.1f} s: {what}", end="")

    trainer = StreamlitPage(trainer_context.new_page(), app_server.url)
    other = StreamlitPage(other_context.new_page(), app_server.url)
    try:
        other.open("labelling", "Inside anchors")
        slider_answer_s(other, "0.65")  # the first answer also draws the page's figures anew
        idle_s = slider_answer_s(other, "0.60")

        mark("baseline")
        trainer.open("finetune-dataset", "Choose a dataset")
        trainer.act(lambda: trainer.page.get_by_text("Upload a zip", exact=True).click())
        uploader = trainer.page.locator('[data-testid="stFileUploader"]').filter(
            has_text="Dataset zip"
        )
        trainer.act(
            lambda: uploader.locator('input[type="file"]').set_input_files(tiny_zip(tmp_path)),
            "Imported tiny.zip",
        )
        assert trainer.metric_int("Images") == 8
        expect(trainer.page.locator('[data-testid="stImageContainer"]')).to_have_count(8)
        assert not trainer.errors(), trainer.errors()
        trainer.screenshot("finetune-dataset")

        mark("dataset")
        trainer.go("finetune-train", re.compile(r"^Images per step"))
        trainer.act(lambda: trainer.page.get_by_role("button", name="Quick CPU recipe").click())
        # The recipe's 6 epochs are 12 iterations here (6 training images, 4 a step): more.
        epochs = trainer.page.get_by_role("spinbutton", name="Epochs", exact=True)
        trainer.act(lambda: (epochs.fill(str(ITERATIONS // 2)), epochs.press("Enter")))
        trainer.act(lambda: trainer.page.get_by_role("button", name="Start training").click())
        # Training: the progress bar counts iterations (the job polls the training process).
        trainer.text(re.compile(rf"^iteration [1-9]\d* / {ITERATIONS} ")).first.wait_for(
            timeout=LONG_MS
        )
        mark("first iterations")
        busy_s = slider_answer_s(other, "0.55")
        still = trainer.text(re.compile(rf"^iteration \d+ / {ITERATIONS} · epoch .* · training"))
        assert still.count() == 1, "the training ended before the other user's slider answered"
        print(f"\nslider answer: {idle_s:.2f} s idle, {busy_s:.2f} s while training")
        assert busy_s < RESPONSE_BOUND_S, (idle_s, busy_s)

        trainer.text(re.compile(rf"Training finished after {ITERATIONS} iterations")).wait_for(
            timeout=LONG_MS
        )
        mark("training")
        assert not trainer.errors(), trainer.errors()
        trainer.screenshot("finetune-train")

        trainer.go("finetune-results", "Take the model with you")
        score = trainer.metric("mAP@0.5")
        assert re.fullmatch(r"0\.\d{3}|1\.000", score), score
        expect(trainer.page.get_by_text("Precision-recall at IoU 0.5")).to_have_count(1)
        expect(
            trainer.page.get_by_role("button", name=re.compile(r"^Download the fine-tuned model"))
        ).to_be_visible()
        assert not trainer.errors(), trainer.errors()
        trainer.screenshot("finetune-results")
        mark("results")
    except BaseException:
        trainer.screenshot("FAILED-finetune-trainer")
        other.screenshot("FAILED-finetune-other")
        raise
    finally:
        trainer_context.close()
        other_context.close()
