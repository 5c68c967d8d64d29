"""Korean in the core and the command line: the pictures of ``render`` and ``detect --out``
draw Hangul with a font that has it, ``--lang`` / ``$FRCNN_LANG`` / the locale choose the
messages' language, and the JSON on stdout is the same in both languages.

The inputs are small (a 160 x 160 input frame for ``render``; a 60 x 80 image and a MobileNet
checkpoint with a 128-pixel transform for ``detect``), as in test_cli.py and
test_cli_production.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from frcnn_core import fonts, render, render_production
from frcnn_core.cli import default_language, main, requested_language
from frcnn_core.detectors import (
    COCO_CLASS_NAMES,
    OFFLINE_ENV,
    WEIGHTS_ENV,
    build_model,
    save_checkpoint,
)
from frcnn_core.i18n import _, language, ngettext, using

ROOT = Path(__file__).resolve().parents[1]
ZEBRAS = ROOT / "sample_images" / "zebras.jpg"
ZEBRA_BOXES = ROOT / "sample_images" / "zebras.json"
MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"
SMALL = ["--set", "height=160", "--set", "width=160", "--weights", "random"]
HANGUL = re.compile(r"[\uac00-\ud7a3]")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TOFU = "\u0378"  # unassigned: a font's missing-glyph box


@pytest.fixture(autouse=True)
def english_environment(monkeypatch, tmp_path):
    """No language from the developer's environment; nothing downloaded."""
    monkeypatch.delenv("FRCNN_LANG", raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv(OFFLINE_ENV, "1")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def ink(text: str, size: int = 32) -> np.ndarray:
    canvas = np.zeros((2 * size, size * (len(text) + 2), 3), dtype=np.uint8)
    return fonts.put_text(canvas, text, (size // 2, size + size // 2), size, (255, 255, 255))


# -- the font -------------------------------------------------------------------------------


def test_the_pictures_font_draws_hangul_not_boxes():
    assert fonts.hangul_available(), fonts.INSTALL_HINT
    assert fonts.hangul_available(bold=True)
    korean, boxes = ink("가나다"), ink(TOFU * 3)
    assert korean.max() == 255 and boxes.max() == 255  # both leave ink ...
    assert not np.array_equal(korean, boxes)  # ... but Hangul is not the missing-glyph box
    # Three different syllables: three different shapes (tofu would repeat one box).
    parts = [ink(ch) for ch in "가나다"]
    assert not np.array_equal(parts[0], parts[1]) and not np.array_equal(parts[1], parts[2])


@pytest.mark.skipif(not DEJAVU.is_file(), reason="DejaVu Sans is not installed")
def test_a_latin_only_font_is_not_taken_for_hangul(monkeypatch, caplog):
    from PIL import ImageFont

    assert not fonts.has_hangul(ImageFont.truetype(str(DEJAVU), 24))
    # $FRCNN_FONT without Hangul: another font is chosen, and the log says why.
    monkeypatch.setenv(fonts.FONT_ENV, str(DEJAVU))
    fonts._choose.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=fonts.__name__):
            assert fonts.font_file() is not None and fonts.font_file()[0] != str(DEJAVU)
        assert "has no Hangul" in caplog.text
        # No Hangul font anywhere: the Latin one, and one warning on how to install one.
        monkeypatch.setattr(fonts, "CANDIDATES", (((str(DEJAVU), 0), (str(DEJAVU), 0)),))
        monkeypatch.delenv(fonts.FONT_ENV)
        fonts._choose.cache_clear()
        fonts._warn_no_hangul.cache_clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=fonts.__name__):
            assert fonts.font_file() == (str(DEJAVU), 0) and not fonts.hangul_available()
            ink("latin only")
            assert caplog.text == ""  # no Korean, no warning
            ink("가나")
            ink("다라")
        assert caplog.text.count("fonts-nanum") == 1
    finally:
        fonts._choose.cache_clear()
        fonts._warn_no_hangul.cache_clear()


@pytest.mark.skipif(
    not (fonts.NANUM / "NanumBarunGothic.ttf").is_file(), reason="fonts-nanum is not installed"
)
def test_frcnn_font_is_used_when_it_has_hangul(monkeypatch):
    chosen = str(fonts.NANUM / "NanumBarunGothic.ttf")
    monkeypatch.setenv(fonts.FONT_ENV, chosen)
    fonts._choose.cache_clear()
    try:
        assert fonts.font_file() == (chosen, 0) and fonts.hangul_available()
        assert fonts.font_file(bold=True) == (chosen, 0)
    finally:
        fonts._choose.cache_clear()


# -- render ---------------------------------------------------------------------------------


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.stem: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for p in sorted(folder.glob("*.png"))
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """``render`` of the zebras at 160 x 160, once in each language."""
    pictures = {}
    for lang in ("en", "ko"):
        out = tmp_path_factory.mktemp(f"render_{lang}")
        argv = ["--lang", lang, "render", "--image", str(ZEBRAS), "--boxes", str(ZEBRA_BOXES)]
        assert main([*argv, *SMALL, "--out", str(out)]) == 0
        pictures[lang] = _pngs(out)
    return pictures


def _band(lang: str, text_of, width: int) -> np.ndarray:
    """The title band ``render._title`` draws for a message in ``lang``, ``width`` wide."""
    with using(lang):
        return render._title(np.zeros((0, width, 3), dtype=np.uint8), text_of())


def test_render_draws_its_titles_in_the_callers_language(rendered):
    en, ko = rendered["en"], rendered["ko"]
    assert list(en) == list(ko) and len(ko) == 9
    for stem in ko:
        assert en[stem].shape[1] == ko[stem].shape[1], stem
        rows = min(36, en[stem].shape[0], ko[stem].shape[0])
        assert not np.array_equal(en[stem][:rows], ko[stem][:rows]), stem  # the titles differ
        # Below the title band, the picture itself is the same in both languages.
        assert np.array_equal(en[stem][-100:], ko[stem][-100:]), stem

    def title():
        n = 4
        return ngettext(
            "1. input {w} x {h} with {n} ground-truth box",
            "1. input {w} x {h} with {n} ground-truth boxes",
            n,
        ).format(w=160, h=160, n=n)

    with using("ko"):
        korean = title()
    assert HANGUL.search(korean) and korean != title()
    for lang, pictures in rendered.items():
        band = _band(lang, title, 160)
        # The PNG's band is exactly that title drawn with the pictures' font ...
        assert pictures["01_gt_boxes"].shape == (band.shape[0] + 160, 160, 3), lang
        assert np.array_equal(pictures["01_gt_boxes"][: band.shape[0]], band), lang
    # ... and in Korean its ink is not the missing-glyph boxes of the same length.
    tofu = _band("ko", lambda: re.sub(r"[\uac00-\ud7a3]", TOFU, korean), 160)
    assert not np.array_equal(_band("ko", title, 160), tofu)


# -- detect --out ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A MobileNet Faster R-CNN with random weights, detections above 0.3, a 128-pixel
    transform (as test_cli_production.py)."""
    torch.manual_seed(11)
    model = build_model(MOBILE, 91)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1:4] += torch.tensor([6.0, 5.0, 4.0])
    path = tmp_path_factory.mktemp("i18n_weights") / "mobile_small.pt"
    save_checkpoint(
        path, model, MOBILE, COCO_CLASS_NAMES, model_kwargs={"min_size": 128, "max_size": 192}
    )
    return path


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, make_pixels) -> Path:
    path = tmp_path_factory.mktemp("i18n_images") / "landscape.png"
    cv2.imwrite(str(path), cv2.cvtColor(make_pixels(60, 80, seed=4), cv2.COLOR_RGB2BGR))
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_detect_out_in_korean(capsys, checkpoint, image_file, tmp_path):
    runs = {}
    for lang in ("en", "ko"):
        out = tmp_path / lang
        argv = ["detect", "--image", str(image_file), "--weights", str(checkpoint)]
        code, stdout, stderr = _run(capsys, *argv, "--out", str(out), "--lang", lang)
        assert code == 0, stderr
        runs[lang] = (json.loads(stdout), stderr, _pngs(out))
    (report_en, err_en, png_en), (report_ko, err_ko, png_ko) = runs["en"], runs["ko"]
    # The JSON is the same, keys and values; only the messages on stderr are translated.
    assert report_ko == report_en and report_en["detections"]
    assert not HANGUL.search(err_en) and err_en.count("wrote ") == 7
    assert HANGUL.search(err_ko) and "wrote " not in err_ko
    assert err_ko.count("저장했습니다") == 7
    assert list(png_en) == list(png_ko) and len(png_ko) == 7
    for stem in png_ko:
        en, ko = png_en[stem], png_ko[stem]
        assert en.shape[1] == ko.shape[1], stem
        rows = min(32, en.shape[0], ko.shape[0])
        assert not np.array_equal(en[:rows], ko[:rows]), stem
    # The detections' title, in Korean, drawn with Hangul glyphs (not boxes).
    n = len(report_ko["detections"])
    with using("ko"):
        title = ngettext(
            "7. {n} detection with score > {threshold:g}",
            "7. {n} detections with score > {threshold:g}",
            n,
        ).format(n=n, threshold=0.3)
    assert HANGUL.search(title)
    with using("ko"):
        band = render_production._title(np.zeros((0, 80, 3), dtype=np.uint8), title)
    assert np.array_equal(png_ko["07_detections"][: band.shape[0]], band)
    assert png_ko["07_detections"].shape == (60 + band.shape[0], 80, 3)


# -- messages -------------------------------------------------------------------------------


def test_a_bad_input_says_so_in_korean_on_one_line(capsys, checkpoint, tmp_path):
    missing = str(tmp_path / "nope.jpg")
    for argv in (
        ["--lang", "ko", "detect", "--image", missing, "--weights", str(checkpoint)],
        ["detect", "--lang=ko", "--image", missing, "--weights", str(checkpoint)],
        ["--lang", "ko", "summarize", "--image", missing, "--boxes", str(ZEBRA_BOXES)],
    ):
        code, out, err = _run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and out == "", err
        assert len(lines) == 1 and lines[0].startswith("오류: "), err
        assert "nope.jpg" in lines[0] and "찾을 수 없습니다" in lines[0]
        assert "Traceback" not in err
    # English by default; the caller's own language is left as it was.
    assert language() == "en"
    threshold = ["detect", "--image", str(ZEBRAS), "--score-threshold", "2"]
    code, out, err = _run(capsys, "--lang", "ko", *threshold)
    assert code == 2 and out == ""
    assert err.strip() == "오류: --score-threshold는 0과 1 사이여야 합니다. 받은 값: 2.0"
    assert language() == "en"
    code, out, err = _run(capsys, *threshold)
    assert err.strip() == "error: --score-threshold must be between 0 and 1, got 2.0"


def test_frcnn_lang_and_the_locale_choose_the_language(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FRCNN_LANG", "ko")
    bad = ["summarize", "--image", str(tmp_path / "a.png"), "--boxes", "b"]
    code, out, err = _run(capsys, *bad)
    assert out == ""
    assert code == 2 and HANGUL.search(err) and err.startswith("오류: ")
    # --lang wins over the environment.
    code, _out, err = _run(capsys, *bad, "--lang", "en")
    assert code == 2 and err.startswith("error: ") and not HANGUL.search(err)
    assert default_language({}) == "en"
    assert default_language({"FRCNN_LANG": "ko_KR"}) == "ko"
    assert default_language({"FRCNN_LANG": "en", "LANG": "ko_KR.UTF-8"}) == "en"
    assert default_language({"LANG": "ko_KR.UTF-8"}) == "ko"
    assert default_language({"LC_MESSAGES": "ko_KR.UTF-8", "LANG": "en_US.UTF-8"}) == "ko"
    assert default_language({"LC_ALL": "C.UTF-8", "LANG": "ko_KR.UTF-8"}) == "en"  # POSIX order
    assert default_language({"FRCNN_LANG": "fr", "LANG": "ko_KR.UTF-8"}) == "ko"
    assert requested_language(["--lang", "en", "render"], {"LANG": "ko_KR"}) == "en"
    assert requested_language(["render", "--lang=ko"], {}) == "ko"
    assert requested_language(["--", "--lang", "ko"], {}) == "en"


def test_help_in_korean(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--lang", "ko", "detect", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert "점수가 이 값보다 높은 검출만 남김" in help_text and "--score-threshold" in help_text
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    assert "keep detections scoring above this" in capsys.readouterr().out


def test_frcnn_lang_in_a_real_process(tmp_path):
    env = {**os.environ, "FRCNN_LANG": "ko", OFFLINE_ENV: "1"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "frcnn_core", "summarize"),
            *("--image", str(tmp_path / "x.png"), "--boxes", str(ZEBRA_BOXES)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("오류: 이미지 ") and "x.png" in lines[0]


def test_core_messages_follow_the_callers_language(tmp_path):
    from frcnn_core.boxes_io import read_boxes
    from frcnn_core.ground_truth import BoxesError
    from frcnn_core.image import ImageError, load_image
    from frcnn_core.safe_io import InputError, read_file

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 101)
    with (
        using("ko"),
        pytest.raises(InputError, match="크기가 101바이트이고, 한도는 100바이트입니다"),
    ):
        read_file(big, 100, _("file"))
    with pytest.raises(InputError, match="is 101 bytes; the limit is 100 bytes"):
        read_file(big, 100)
    with using("ko"), pytest.raises(ImageError, match=r"^업로드한 파일: 빈 파일입니다"):
        load_image(b"")
    with using("ko"), pytest.raises(BoxesError, match=r"a\.txt 2행: .*필드가 3개입니다"):
        read_boxes(b"0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n", "a.txt", (10, 10))
