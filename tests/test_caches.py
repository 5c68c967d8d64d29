"""explorer.compute's shared machinery, without a browser: the decoded-image cache (bounded by
bytes), the forward slots (many sessions, few cores) and the CPU copies used after running out of
GPU memory. The fallback itself runs in tests/test_app_robustness.py (AppTest)."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from explorer import compute
from explorer.compute import DecodedImages, ForwardSlots, default_forward_slots, env_int
from frcnn_core.image import ImageError
from frcnn_core.pipeline import DetectorHeads

# -- decoded images ---------------------------------------------------------------------------


def png(width: int, height: int, value: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


MB = 2**20
# 1024 x 512 x 3 bytes = 1.5 MB of pixels each.
IMAGES = {f"img{i}": png(1024, 512, i) for i in range(5)}


def test_the_byte_budget_bounds_the_decoded_images() -> None:
    cache = DecodedImages(max_entries=64, max_bytes=4 * MB)  # room for two (3 MB), not three
    for digest, data in IMAGES.items():
        assert cache.get(digest, data).size == (512, 1024)
        assert cache.nbytes <= 4 * MB
    assert len(cache) == 2
    assert cache.nbytes == 2 * 1024 * 512 * 3
    assert list(cache._items) == ["img3", "img4"]  # the least recently used went first


def test_the_entry_count_bounds_them_too() -> None:
    cache = DecodedImages(max_entries=3, max_bytes=1000 * MB)
    for digest, data in IMAGES.items():
        cache.get(digest, data)
    assert list(cache._items) == ["img2", "img3", "img4"]


def test_a_hit_is_the_same_read_only_image_and_refreshes_it() -> None:
    cache = DecodedImages(max_entries=64, max_bytes=4 * MB)
    first = cache.get("img0", IMAGES["img0"])
    cache.get("img1", IMAGES["img1"])
    assert cache.get("img0", IMAGES["img0"]) is first  # shared, not a copy per caller
    assert not first.pixels.flags.writeable
    with pytest.raises(ValueError):
        first.pixels[0, 0, 0] = 1
    cache.get("img2", IMAGES["img2"])  # img1 is now the least recently used
    assert list(cache._items) == ["img0", "img2"]


def test_an_image_over_the_whole_budget_is_used_but_not_kept() -> None:
    cache = DecodedImages(max_entries=64, max_bytes=1 * MB)
    loaded = cache.get("img0", IMAGES["img0"])
    assert loaded.size == (512, 1024)
    assert len(cache) == 0 and cache.nbytes == 0


def test_a_bad_file_raises_and_is_not_kept() -> None:
    cache = DecodedImages(max_entries=64, max_bytes=4 * MB)
    with pytest.raises(ImageError):
        cache.get("bad", b"not an image")
    assert len(cache) == 0


def test_the_app_cache_holds_at_most_its_budget_of_the_largest_photos() -> None:
    # 64 entries of 40-megapixel photos would be 7.5 GB; the budget keeps four.
    assert compute.DECODED.max_entries == compute.IMAGE_CACHE_ENTRIES == 64
    assert compute.DECODED.max_bytes == compute.IMAGE_CACHE_MB * MB == 512 * MB


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 7), ("3", 3), ("x", 7), ("0", 7), ("-2", 7), ("", 7)]
)
def test_env_int(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int) -> None:
    if value is None:
        monkeypatch.delenv("FRCNN_TEST_SETTING", raising=False)
    else:
        monkeypatch.setenv("FRCNN_TEST_SETTING", value)
    assert env_int("FRCNN_TEST_SETTING", 7) == expected


@pytest.mark.parametrize(
    ("cores", "threads", "slots"), [(2, 2, 1), (16, 8, 2), (4, 1, 4), (1, 4, 1), (None, 2, 1)]
)
def test_one_forward_slot_per_torch_threads_worth_of_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, threads: int, slots: int
) -> None:
    monkeypatch.setattr(compute.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(compute.torch, "get_num_threads", lambda: threads)
    assert default_forward_slots() == slots


# -- forward slots ----------------------------------------------------------------------------


def busiest(slots: ForwardSlots, threads: int) -> int:
    """The most threads inside ``slots.hold()`` at once, ``threads`` trying together."""
    lock = threading.Lock()
    inside = [0]
    most = [0]
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        with slots.hold():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=10)
    assert not any(w.is_alive() for w in workers)
    return most[0]


def test_one_slot_lets_one_forward_run_at_a_time() -> None:
    assert busiest(ForwardSlots(1), threads=4) == 1


def test_two_slots_let_two_run_together() -> None:
    slots = ForwardSlots(2)
    both_inside = threading.Barrier(2, timeout=5)  # breaks unless two hold a slot at once

    def work() -> None:
        with slots.hold():
            both_inside.wait()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=10)
    assert not both_inside.broken


def test_a_nested_hold_passes_through_instead_of_deadlocking() -> None:
    slots = ForwardSlots(1)
    seen: list[bool] = []

    def work() -> None:
        with slots.hold():
            with slots.hold():  # e.g. a forward that calls another cached forward
                seen.append(slots.held())
            seen.append(slots.held())
        seen.append(slots.held())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert seen == [True, True, False]


def test_a_failing_forward_gives_its_slot_back() -> None:
    slots = ForwardSlots(1)
    with pytest.raises(torch.cuda.OutOfMemoryError), slots.hold():
        raise torch.cuda.OutOfMemoryError("simulated")
    assert not slots.held()
    assert slots._free.acquire(blocking=False)  # free again
    slots._free.release()


def test_a_slot_is_held_per_thread() -> None:
    slots = ForwardSlots(2)
    other: list[bool] = []
    with slots.hold():
        worker = threading.Thread(target=lambda: other.append(slots.held()))
        worker.start()
        worker.join(timeout=5)
        assert slots.held()
    assert other == [False]


# -- after running out of GPU memory ----------------------------------------------------------


def test_a_cpu_copy_has_the_same_weights_and_is_another_module() -> None:
    heads = DetectorHeads(2, 9, seed=5, hidden=32).eval()
    copy = compute.cpu_copy(heads)
    assert copy is not heads and isinstance(copy, DetectorHeads)
    original, copied = heads.state_dict(), copy.state_dict()
    assert list(copied) == list(original)
    for name, tensor in original.items():
        assert copied[name].device.type == "cpu"
        assert torch.equal(copied[name], tensor), name
        assert copied[name].data_ptr() != tensor.data_ptr(), name
    x = torch.randn(1, 512, 4, 4)
    with torch.no_grad():
        assert torch.equal(copy.rpn(x)[0], heads.rpn(x)[0])
