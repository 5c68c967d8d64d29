"""Download the tutorial's KITTI-tiny dataset where a network exists.

``fetch_kitti_tiny(out)`` probes the host briefly (``$FRCNN_OFFLINE=1`` skips even that),
downloads ``kitti_tiny.zip`` (MMDetection's copy, about 6 MB) with a size and a time bound and a
progress line, and unpacks it safely (:func:`frcnn_core.datasets.import_zip`) so that
``out/training/image_2``, ``out/training/label_2``, ``out/train.txt`` and ``out/val.txt`` exist.
Without a network it fails with one line that says what to do instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from frcnn_core.datasets import DatasetError, DetectionDataset, import_zip
from frcnn_core.detectors import OFFLINE_ENV, host_reachable
from frcnn_core.i18n import _

KITTI_TINY_URL = "https://download.openmmlab.com/mmdetection/data/kitti_tiny.zip"
MAX_DOWNLOAD_BYTES = 200 * 2**20
DOWNLOAD_TIMEOUT_S = 300.0
SOCKET_TIMEOUT_S = 20.0


class FetchError(ValueError):
    """The dataset could not be fetched; one line for the user."""


def _stderr_progress(done: int, total: int | None) -> None:
    total_text = f" of {total / 2**20:.1f}" if total else ""
    print(
        f"\rdownloading kitti_tiny.zip: {done / 2**20:.1f}{total_text} MB", end="", file=sys.stderr
    )


def download(
    url: str,
    dest: Path,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    progress: Callable[[int, int | None], None] | None = _stderr_progress,
) -> None:
    """Stream ``url`` to ``dest``, refusing more than ``max_bytes`` or ``timeout`` seconds.

    Raises:
        FetchError: offline, unreachable, an HTTP error, too large or too slow.
    """
    host = url.split("/")[2]
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise FetchError(
            _(
                "{env} is set: not downloading from {host}; `python -m frcnn_core "
                "make-dataset --out DIR` makes the offline dataset"
            ).format(env=OFFLINE_ENV, host=host)
        )
    if not host_reachable(url):
        raise FetchError(
            _(
                "no network access to {host}; download {url} elsewhere and unzip it, or use "
                "`python -m frcnn_core make-dataset --out DIR` for the offline dataset"
            ).format(host=host, url=url)
        )
    started = time.monotonic()
    done = 0
    try:
        with (
            urllib.request.urlopen(url, timeout=SOCKET_TIMEOUT_S) as response,
            open(dest, "wb") as out,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise FetchError(
                    _("{url} is {size:.0f} MB, over the {limit:.0f} MB limit").format(
                        url=url, size=total / 2**20, limit=max_bytes / 2**20
                    )
                )
            while chunk := response.read(1 << 16):
                done += len(chunk)
                if done > max_bytes:
                    raise FetchError(
                        _("{url} is over the {limit:.0f} MB limit").format(
                            url=url, limit=max_bytes / 2**20
                        )
                    )
                if time.monotonic() - started > timeout:
                    raise FetchError(
                        _("the download did not finish within {seconds:.0f} s").format(
                            seconds=timeout
                        )
                    )
                out.write(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        raise FetchError(_("{url} answered HTTP {code}").format(url=url, code=exc.code)) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            _("downloading {url} failed: {reason}").format(url=url, reason=reason)
        ) from None
    finally:
        if progress is not None and done:
            print(file=sys.stderr)  # end the progress line


def fetch_kitti_tiny(out: str | os.PathLike[str], url: str = KITTI_TINY_URL) -> DetectionDataset:
    """Download and unpack KITTI-tiny into ``out`` (which must not exist yet).

    Returns:
        Its validation split, as :func:`frcnn_core.datasets.load_dataset` reads it.

    Raises:
        FetchError: no network, or the download failed.
        DatasetError: ``out`` exists, or the archive is not the expected dataset.
    """
    out = Path(out)
    if out.exists():
        raise DatasetError(
            _("{path} already exists; choose a new folder for the dataset").format(path=out)
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kitti_tiny.", suffix=".zip", dir=out.parent)
    os.close(fd)
    try:
        download(url, Path(tmp))
        return import_zip(tmp, out, format="kitti")
    finally:
        Path(tmp).unlink(missing_ok=True)
