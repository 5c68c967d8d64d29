"""Server memory when every session loads a heads file: RSS for 1, 10 and 30 sessions.

Run from the repository root (no browser; sessions speak Streamlit's protocol, see
:mod:`benchmarks.st_client`)::

    .venv/bin/python -m benchmarks.bench_heads_memory [--sessions 1 10 30] [--json PATH]

It starts ``streamlit run app.py`` on 127.0.0.1 (a free port, a temporary project store), warms
it with one session that opens the Image and Train pages (VGG16 and the initial heads load),
closes that session and reads the server's resident set: the baseline, "no heads file". Then it
opens sessions up to each level, and each one opens the Train page and uploads a heads file in
the real format (a two-class model as the Train page writes it: its own RPN and output layers,
fc6 and fc7 left out as seeded), checks that the sidebar says the heads are loaded, and reads
the RSS again with all of them still open. A loaded file costs a session its own RPN and output
layers (about 10 MB) and the uploaded bytes; fc6 and fc7 (470 MB) are one copy for the server.
The goal (issue 11): 30 sessions stay under 1.5x the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.class_load import tree_usage
from benchmarks.st_client import LocalApp, StreamlitSession
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import heads_to_bytes

TIMEOUT_S = 300.0


def heads_file() -> bytes:
    """A two-class model as the Train page saves it (fc6 and fc7 not trained, left out)."""
    model = DetectorHeads.for_params(2, PipelineParams())
    with torch.no_grad():
        model.head.score.weight.add_(0.5)  # as if trained
    model.trained_fc = False
    return heads_to_bytes(model, ("background", "zebra"))


def rss_mib(app: LocalApp, settle_s: float = 3.0) -> float:
    time.sleep(settle_s)  # let the allocator return what the last run freed
    return tree_usage(app.pid or 0)[0] / 2**20


async def load_heads(session: StreamlitSession, data: bytes) -> None:
    await session.navigate("train")
    result = await session.upload("train:upload*", "zebra_heads.pt", data)
    captions = session.texts("caption", container="sidebar")
    if result.errors or not any("loaded from" in c for c in captions):
        raise RuntimeError(f"{session.name}: the heads did not load: {result.errors} {captions}")


async def measure(app: LocalApp, levels: list[int], data: bytes) -> list[dict[str, float]]:
    async with StreamlitSession(app.url, name="warm-up", timeout=TIMEOUT_S) as warm:
        await warm.navigate("train")
    baseline = rss_mib(app)
    rows = [{"sessions": 0, "rss_mib": baseline, "ratio": 1.0}]
    print(f"{'sessions':>8} {'RSS MiB':>8} {'x none':>7}", flush=True)
    print(f"{0:>8} {baseline:>8.0f} {1.0:>7.2f}", flush=True)
    sessions: list[StreamlitSession] = []
    try:
        for level in levels:
            while len(sessions) < level:
                s = StreamlitSession(app.url, name=f"session {len(sessions)}", timeout=TIMEOUT_S)
                await s.connect()
                sessions.append(s)
                await load_heads(s, data)
            rss = rss_mib(app)
            rows.append({"sessions": level, "rss_mib": rss, "ratio": rss / baseline})
            print(f"{level:>8} {rss:>8.0f} {rss / baseline:>7.2f}", flush=True)
    finally:
        for s in sessions:
            await s.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    data = heads_file()
    gc.collect()
    print(f"heads file: {len(data) / 2**20:.1f} MB; {platform.processor() or platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"FRCNN_DEVICE": "cpu", "FRCNN_STORE": f"sqlite:///{tmp}/store.sqlite3"}
        with LocalApp(log_path=Path(tmp) / "server.log", env=env) as app:
            rows = asyncio.run(measure(app, sorted(args.sessions), data))
    worst = rows[-1]
    verdict = "PASS" if worst["ratio"] < 1.5 else "FAIL"
    print(f"{verdict}: {worst['sessions']} sessions at {worst['ratio']:.2f}x (goal < 1.5x)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
