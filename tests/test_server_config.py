"""The server's settings for real use, as Streamlit reads them from .streamlit/config.toml, and
the upload limits: every file the app writes for a user fits its kind's limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.uploads import LIMITS_MB
from frcnn_core.backbone import _features_module
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import heads_to_bytes, split_backbone

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> str:
    """``streamlit config show`` in the project folder: the settings a server started here
    runs with."""
    out = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, STREAMLIT_SERVER_FILE_WATCHER_TYPE=""),
        check=True,
    )
    return out.stdout


def setting(config: str, name: str) -> str:
    found = re.search(rf"^{name} = (.+)$", config, re.MULTILINE)
    assert found, f"{name} is not in the effective config"
    return found.group(1).strip()


def test_no_file_watching_and_no_error_details(config: str) -> None:
    assert setting(config, "fileWatcherType") == '"none"'
    assert setting(config, "showErrorDetails") == '"none"'
    blacklist = config.split("folderWatchBlacklist = [", 1)[1].split("]", 1)[0]
    assert '".venv"' in blacklist and '"tests"' in blacklist


def test_no_full_garbage_collection_after_every_run() -> None:
    """A hidden option (``config show`` leaves it out): read as a server started here does."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from streamlit import config as c; print(c.get_option("
            + repr("runner.postScriptGC")
            + "))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_no_warning_for_widgets_whose_default_is_their_state(config: str) -> None:
    """explorer/widgets.py gives every setting's widget its session value as the default too."""
    assert setting(config, "disableWidgetStateDuplicationWarning") == "true"


def test_a_laptop_serves_only_itself(config: str) -> None:
    assert setting(config, "address") == '"localhost"'


def test_the_server_limit_is_the_largest_kind(config: str) -> None:
    assert int(setting(config, "maxUploadSize")) == max(LIMITS_MB.values())


def test_a_heads_file_with_a_trained_conv5_fits_its_upload_limit() -> None:
    """The largest heads file the Train page writes: tutorial-size heads and the conv5 block."""
    heads = DetectorHeads(20, 9, 512, 7, seed=0)
    heads.trained_fc = False  # fc6 / fc7 are not written unless trained (470 MB)
    _, conv5 = split_backbone(_features_module())
    data = heads_to_bytes(heads, tuple(f"class {i}" for i in range(20)), conv5)
    assert len(data) > 30 * 2**20  # the case the old 25 MB limit refused
    assert len(data) < LIMITS_MB["heads"] * 2**20
