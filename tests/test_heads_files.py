"""Heads weights files and memory: fc6 and fc7 (120 M parameters) are seeded, not trained by
default, so a file leaves them out and every model that did not train them shares one copy."""

from __future__ import annotations

import io

import pytest
import torch

from frcnn_core.head import FastRCNNHead
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import heads_from_bytes, heads_to_bytes

HIDDEN = 64  # the sharing does not depend on the width


def rss_mb() -> int:
    with open("/proc/self/status") as fh:
        return int(fh.read().split("VmRSS:")[1].split()[0]) // 1024


def test_fc6_and_fc7_depend_only_on_the_seed_and_sizes() -> None:
    one = FastRCNNHead(1, 512 * 7 * 7, hidden=HIDDEN, seed=1)
    five = FastRCNNHead(5, 512 * 7 * 7, hidden=HIDDEN, seed=1)
    assert torch.equal(one.fc6.weight, five.fc6.weight)
    assert torch.equal(one.fc7.weight, five.fc7.weight)
    other_seed = FastRCNNHead(1, 512 * 7 * 7, hidden=HIDDEN, seed=2)
    assert not torch.equal(one.fc6.weight, other_seed.fc6.weight)


def frozen_fc_model(num_classes: int, shared: DetectorHeads) -> DetectorHeads:
    """A "trained" model as the Train page makes one: its own RPN and output layers, the
    shared fc6 / fc7."""
    model = DetectorHeads(num_classes, 9, 512, 7, seed=0, hidden=HIDDEN)
    with torch.no_grad():
        model.head.score.weight.add_(1.0)  # as if trained
    model.head.fc6, model.head.fc7 = shared.head.fc6, shared.head.fc7
    model.trained_fc = False
    return model


def test_a_loaded_file_shares_fc6_and_fc7_and_computes_the_same() -> None:
    shared = DetectorHeads(1, 9, 512, 7, seed=0, hidden=HIDDEN).eval()
    model = frozen_fc_model(2, shared).eval()
    loaded = heads_from_bytes(heads_to_bytes(model, ("cat", "dog")), shared=shared)
    assert loaded.heads.head.fc6 is shared.head.fc6 and loaded.heads.head.fc7 is shared.head.fc7
    pooled = torch.randn(3, 512, 7, 7)
    with torch.no_grad():
        for got, want in zip(loaded.heads.head(pooled), model.head(pooled), strict=True):
            assert torch.equal(got, want)
    # Without a shared copy they are rebuilt from the seed: the same values.
    alone = heads_from_bytes(heads_to_bytes(model, ("cat", "dog")))
    assert alone.heads.head.fc6 is not shared.head.fc6
    assert torch.equal(alone.heads.head.fc6.weight, shared.head.fc6.weight)


def test_a_file_from_before_the_init_order_changed_loads_its_own_fc_layers() -> None:
    old = DetectorHeads(2, 9, 512, 7, seed=0, hidden=HIDDEN, legacy_init=True).eval()
    old.trained_fc = False
    payload = torch.load(io.BytesIO(heads_to_bytes(old, ("a", "b"))), weights_only=True)
    del payload["init"]  # what the previous version wrote
    buf = io.BytesIO()
    torch.save(payload, buf)
    shared = DetectorHeads(1, 9, 512, 7, seed=0, hidden=HIDDEN)
    loaded = heads_from_bytes(buf.getvalue(), shared=shared)
    assert loaded.heads.head.fc6 is not shared.head.fc6  # the old draw order, not shareable
    assert torch.equal(loaded.heads.head.fc6.weight, old.head.fc6.weight)
    assert not torch.equal(old.head.fc6.weight, shared.head.fc6.weight)


@pytest.mark.slow
def test_thirty_loaded_files_cost_their_own_layers_only() -> None:
    """At the tutorial's sizes (fc6 is 25088 x 4096): 30 loads of a 10 MB file."""
    shared = DetectorHeads(1, 9, 512, 7, seed=0).eval()
    data = heads_to_bytes(_full_size(shared), ("z",))
    before = rss_mb()
    kept = [heads_from_bytes(data, shared=shared) for _ in range(30)]
    grown = rss_mb() - before
    assert len(kept) == 30
    assert grown < 30 * 15  # about 10 MB each; without sharing, 470 MB each
    assert len(data) < 12 * 2**20


def _full_size(shared: DetectorHeads) -> DetectorHeads:
    model = DetectorHeads(1, 9, 512, 7, seed=0)
    model.head.fc6, model.head.fc7 = shared.head.fc6, shared.head.fc7
    model.trained_fc = False
    return model
