"""The app's shared machinery, without a browser: the decoded-image cache and the stage cache
(bounded by bytes; a result asked for by two sessions at once computed once), the forward slots
(many sessions, few cores), the job queue (training off the page script) and the CPU copies used
after running out of GPU memory. The fallback itself runs in tests/test_app_robustness.py."""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from explorer import caches, models, runtime
from explorer.caches import DecodedImages, StageCache, nbytes
from explorer.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobQueue
from explorer.runtime import ForwardSlots, default_forward_slots, env_int
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
    assert caches.DECODED.max_entries == caches.IMAGE_CACHE_ENTRIES == 64
    assert caches.DECODED.max_bytes == caches.IMAGE_CACHE_MB * MB == 512 * MB


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
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: threads)
    assert default_forward_slots() == slots


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 0.0005),
        ("2", 0.002),
        ("0.25", 0.00025),
        ("x", 0.0005),
        ("0", 0.0005),
        ("1e9", 0.0005),
    ],
)
def test_the_switch_interval_comes_from_its_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    before = sys.getswitchinterval()
    if value is None:
        monkeypatch.delenv(runtime.SWITCH_INTERVAL_ENV, raising=False)
    else:
        monkeypatch.setenv(runtime.SWITCH_INTERVAL_ENV, value)
    try:
        assert runtime.tune_switch_interval() == pytest.approx(seconds)
        assert sys.getswitchinterval() == pytest.approx(seconds)
    finally:
        sys.setswitchinterval(before)


def test_the_server_process_runs_at_the_short_switch_interval() -> None:
    # Importing the runtime (as the app does) sets it, in a fresh interpreter.
    code = "import sys, explorer.runtime; print(sys.getswitchinterval())"
    env = {k: v for k, v in os.environ.items() if k != runtime.SWITCH_INTERVAL_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert float(out.stdout) == pytest.approx(runtime.SWITCH_INTERVAL_MS / 1000)


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
    assert slots.load() == (0, 0)  # free again


def test_a_slot_is_held_per_thread() -> None:
    slots = ForwardSlots(2)
    other: list[bool] = []
    with slots.hold():
        worker = threading.Thread(target=lambda: other.append(slots.held()))
        worker.start()
        worker.join(timeout=5)
        assert slots.held()
    assert other == [False]


def test_waiting_forwards_are_served_first_come_first_served_and_told_their_place() -> None:
    slots = ForwardSlots(1)
    order: list[int] = []
    told: dict[int, list[int]] = {}

    def work(i: int) -> None:
        def on_wait(ahead: int) -> None:
            told.setdefault(i, []).append(ahead)

        with slots.hold(on_wait):
            order.append(i)

    with slots.hold():  # the slot is busy: everyone queues behind it
        workers = []
        for i in range(4):
            workers.append(threading.Thread(target=work, args=(i,)))
            workers[-1].start()
            deadline = time.monotonic() + 5
            while slots.load() != (1, i + 1) and time.monotonic() < deadline:
                time.sleep(0.005)
        assert slots.load() == (1, 4)
    for w in workers:
        w.join(timeout=10)
    assert order == [0, 1, 2, 3]
    # Each was told at once how many were ahead (the running forward and those queued before).
    assert [told[i][0] for i in range(4)] == [1, 2, 3, 4]
    # ... and its place only ever went down.
    assert all(seq == sorted(seq, reverse=True) for seq in told.values())
    assert slots.load() == (0, 0)


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    """Streamlit stops a script whose student moved on by raising at its next write: the
    waiting forward then leaves its place, and the one behind it moves up."""
    slots = ForwardSlots(1)
    done: list[str] = []

    class MovedOn(Exception):
        pass

    def quitter() -> None:
        def on_wait(ahead: int) -> None:
            raise MovedOn

        with pytest.raises(MovedOn), slots.hold(on_wait):
            done.append("quitter ran")  # never

    def patient() -> None:
        with slots.hold(lambda ahead: None):
            done.append("patient ran")

    with slots.hold():
        first = threading.Thread(target=quitter)
        first.start()
        first.join(timeout=5)
        assert slots.load() == (1, 0)  # the quitter is gone from the queue
        second = threading.Thread(target=patient)
        second.start()
        deadline = time.monotonic() + 5
        while slots.load() != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.005)
    second.join(timeout=5)
    assert done == ["patient ran"]
    assert slots.load() == (0, 0)


# -- after running out of GPU memory ----------------------------------------------------------


def test_a_cpu_copy_has_the_same_weights_and_is_another_module() -> None:
    heads = DetectorHeads(2, 9, 512, 7, seed=5, hidden=32).eval()
    copy = models.cpu_copy(heads)
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


# -- the stage cache --------------------------------------------------------------------------


def test_nbytes_counts_tensors_and_arrays_once() -> None:
    t = torch.zeros(1000)  # 4000 bytes
    a = np.zeros(500, np.uint8)
    assert nbytes(t) == 4000 and nbytes(a) == 500
    assert nbytes((t, t[10:], {"x": a, "y": [a[5:]]})) == 4500  # views share their storage
    assert nbytes("text") == 0


def test_the_stage_cache_is_bounded_by_bytes_and_entries() -> None:
    cache = StageCache(max_entries=10, max_bytes=10_000)
    for i in range(5):
        cache.get_or_compute(("stage", i), lambda: torch.zeros(1000))  # 4000 bytes each
    assert len(cache) == 2 and cache.nbytes == 8000  # the two most recent
    assert ("stage", 4) in cache and ("stage", 0) not in cache
    small = StageCache(max_entries=3, max_bytes=10**9)
    for i in range(5):
        small.get_or_compute(("s", i), lambda: 1)
    assert len(small) == 3
    too_big = StageCache(max_entries=10, max_bytes=100)
    assert too_big.get_or_compute(("x", 0), lambda: torch.zeros(100)).numel() == 100
    assert len(too_big) == 0  # used, not kept


def test_a_costly_result_outlives_cheap_ones_of_the_same_size() -> None:
    """A backbone's features (seconds to compute) stay while a class's many RoI batches
    (cheap, as large) come and go; with plain LRU they were evicted and computed again."""
    cache = StageCache(max_entries=100, max_bytes=4 * 40_000)

    def costly() -> torch.Tensor:
        time.sleep(0.2)
        return torch.zeros(10_000)  # 40 kB

    cache.get_or_compute(("backbone", 0), costly)
    for i in range(20):
        cache.get_or_compute(("roi_pool", i), lambda: torch.zeros(10_000))
        assert ("backbone", 0) in cache, i
    assert cache.misses["backbone"] == 1 and cache.misses["roi_pool"] == 20
    assert len(cache) == 4 and ("roi_pool", 19) in cache and ("roi_pool", 15) not in cache
    # Aging: results that keep being used win in the end over one that is never asked again.
    for i in range(400):
        cache.get_or_compute(("roi_pool", 100 + i % 3), lambda: torch.zeros(10_000))
        cache.get_or_compute(("roi_pool", 200 + i), lambda: torch.zeros(10_000))
    assert ("backbone", 0) not in cache


def test_a_hit_is_the_same_object_and_counts() -> None:
    cache = StageCache(max_entries=10, max_bytes=10**9)
    first = cache.get_or_compute(("anchors", 1), lambda: torch.ones(3))
    again = cache.get_or_compute(("anchors", 1), lambda: torch.zeros(3))
    assert again is first
    assert cache.misses["anchors"] == 1 and cache.hits["anchors"] == 1


def test_two_threads_asking_at_once_compute_once() -> None:
    cache = StageCache(max_entries=10, max_bytes=10**9)
    calls: list[int] = []
    started = threading.Event()

    def slow() -> str:
        calls.append(1)
        started.set()
        time.sleep(0.3)
        return "features"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(cache.get_or_compute(("b", 1), slow)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: results.append(cache.get_or_compute(("b", 1), slow)))
    second.start()
    first.join(5)
    second.join(5)
    assert results == ["features", "features"]
    assert calls == [1]  # the second thread waited for the first's result


def test_a_failure_is_not_cached_and_the_waiter_meets_it_too() -> None:
    cache = StageCache(max_entries=10, max_bytes=10**9)
    gate = threading.Event()
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        gate.wait(5)
        raise ValueError("broken stage")

    errors: list[str] = []

    def ask() -> None:
        try:
            cache.get_or_compute(("bad", 1), broken)
        except ValueError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert errors == ["broken stage", "broken stage"]
    assert calls == [1, 1]  # the waiter tried again itself
    assert ("bad", 1) not in cache
    assert cache.get_or_compute(("bad", 1), lambda: "fixed") == "fixed"


# -- the job queue ----------------------------------------------------------------------------


def test_jobs_run_in_order_at_most_n_at_once() -> None:
    queue = JobQueue(workers=1)
    gate = threading.Event()
    order: list[str] = []

    def work(name: str):
        def run(job: Job) -> str:
            gate.wait(5)
            order.append(name)
            job.report(done=name)
            return name.upper()

        return run

    jobs = [queue.submit(Job(work(n), title=n)) for n in ("a", "b", "c")]
    time.sleep(0.1)
    assert [j.state for j in jobs] == [RUNNING, QUEUED, QUEUED]
    assert [queue.ahead(j) for j in jobs] == [0, 1, 2]  # the running one, then the line
    assert queue.counts() == (1, 2)
    gate.set()
    assert all(j.wait(5) for j in jobs)
    assert order == ["a", "b", "c"]
    assert [j.result for j in jobs] == ["A", "B", "C"]
    assert [j.state for j in jobs] == [DONE] * 3
    assert jobs[2].progress == {"done": "c"}
    assert queue.counts() == (0, 0)


def test_a_cancelled_job_stops_at_its_next_check_and_keeps_its_result() -> None:
    queue = JobQueue(workers=1)
    steps: list[int] = []

    def work(job: Job) -> list[int]:
        try:
            for i in range(1000):
                job.check()
                steps.append(i)
                time.sleep(0.01)
        except Exception:
            return list(steps)  # what it chose to keep
        return steps

    job = queue.submit(Job(work))
    time.sleep(0.1)
    job.cancel()
    assert job.wait(5)
    assert job.state == CANCELLED
    assert 0 < len(job.result) < 1000
    queued = Job(lambda job: "never")
    queued.cancel()
    queue.submit(queued)
    assert queued.wait(5) and queued.state == CANCELLED and queued.result is None


def test_a_failing_job_says_why_and_frees_its_worker() -> None:
    queue = JobQueue(workers=1)

    def broken(job: Job) -> None:
        raise RuntimeError("out of ideas")

    failed = queue.submit(Job(broken))
    after = queue.submit(Job(lambda job: 42))
    assert failed.wait(5) and after.wait(5)
    assert failed.state == FAILED and failed.error == "out of ideas"
    assert after.state == DONE and after.result == 42


# -- fc6 rows ---------------------------------------------------------------------------------


def _frozen_linear(n_in: int = 96, n_out: int = 32, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(n_in, n_out).eval().requires_grad_(False)


def test_cached_rows_give_the_linear_layers_own_outputs_and_only_new_rows_are_multiplied() -> None:
    plain = _frozen_linear()
    cached = caches.RowCachedLinear(plain, 2**20)
    a, b = torch.randn(10, 96), torch.randn(6, 96)
    with torch.no_grad():
        first = cached(a)
        assert torch.equal(first, plain(a))
        assert (cached.hits, cached.misses) == (0, 10)
        # Another student's RoIs: four of the first batch (reordered) and six new ones.
        mixed = torch.cat([a[[7, 2]], b, a[[0, 9]]])
        out = cached(mixed)
    assert (cached.hits, cached.misses) == (4, 16)
    assert torch.allclose(out, plain(mixed), atol=1e-6, rtol=0)
    assert torch.equal(out[:2], first[[7, 2]])  # the rows kept, not recomputed
    assert list(cached.state_dict()) == ["weight", "bias"]
    assert cached.weight is plain.weight and cached.bias is plain.bias  # shared, not copied


def test_a_rows_key_is_its_content_to_the_last_bit() -> None:
    rows = torch.randn(6, 512)
    rows[3] = rows[1]  # the same RoI twice
    flipped = rows.clone()
    flipped.view(torch.int32)[4, 100] ^= 1  # one bit of one float: the nearest other value
    zero = torch.zeros(2, 512)
    zero[1, 7] = -0.0  # equal as numbers, not as bytes (and fc6 outputs may differ in sign)
    keys = caches.row_keys(rows)
    assert keys[3] == keys[1]
    assert len(set(keys)) == 5
    assert caches.row_keys(flipped)[4] != keys[4]
    assert caches.row_keys(flipped)[:4] == keys[:4]
    assert caches.row_keys(zero)[0] != caches.row_keys(zero)[1]
    assert caches.row_keys(rows.double())[0] != keys[0]  # the dtype is part of the key
    assert caches.row_keys(rows[4:5].clone()) == [keys[4]]  # a row alone keys as in a batch


def test_the_row_budget_bounds_the_rows_kept() -> None:
    cached = caches.RowCachedLinear(_frozen_linear(), 5 * 32 * 4)  # five rows of 32 floats
    with torch.no_grad():
        cached(torch.randn(12, 96))
        assert len(cached._rows) == 5
        last = torch.randn(3, 96)
        cached(last)
        cached(last)
    assert len(cached._rows) == 5 and cached.hits == 3  # the newest stay, least recent go


def test_weights_changed_in_place_start_the_rows_again() -> None:
    plain = _frozen_linear()
    cached = caches.RowCachedLinear(plain, 2**20)
    x = torch.randn(4, 96)
    with torch.no_grad():
        before = cached(x)
        plain.weight.add_(1.0)
        after = cached(x)
    assert not torch.allclose(before, after)
    assert torch.equal(after, torch.nn.functional.linear(x, plain.weight, plain.bias))


def test_a_gradient_or_an_input_that_is_no_batch_of_rows_computes_plainly() -> None:
    plain = torch.nn.Linear(96, 32)  # trainable: a gradient is wanted
    cached = caches.RowCachedLinear(plain, 2**20)
    x = torch.randn(4, 96)
    out = cached(x)
    out.sum().backward()
    assert plain.weight.grad is not None and (cached.hits, cached.misses) == (0, 0)
    frozen = caches.RowCachedLinear(_frozen_linear(), 2**20)
    with torch.no_grad():
        frozen(torch.randn(4, 96))
        assert frozen.misses == 4
        out = frozen(torch.randn(2, 3, 96))  # not a batch of rows
    assert out.shape == (2, 3, 32) and frozen.misses == 4


def test_a_copy_is_a_plain_layer_of_its_own() -> None:
    cached = caches.RowCachedLinear(_frozen_linear(), 2**20)
    copied = copy.deepcopy(cached)
    assert type(copied) is torch.nn.Linear
    assert torch.equal(copied.weight, cached.weight)
    assert copied.weight.data_ptr() != cached.weight.data_ptr()


def test_the_shared_fc6_keeps_its_rows_and_the_initial_heads_use_it() -> None:
    heads = models.initial_heads(2, 9, 7)
    assert isinstance(heads.head.fc6, caches.RowCachedLinear)
    assert heads.head.fc6 is models.initial_heads(3, 9, 7).head.fc6  # one for every class count
    assert not isinstance(heads.head.fc7, caches.RowCachedLinear)
