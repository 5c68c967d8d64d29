"""The load generator's own arithmetic (benchmarks/class_load.py); no server."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from benchmarks.class_load import Student, parse_args, percentile, student_photo, tree_usage


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    # Nearest rank: the ceil(q/100 * n)-th smallest: p90 of 10 values is the 9th, p99 the 10th.
    assert percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile(values, 50) == 5.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 90) != percentile([], 90)  # NaN


def test_scan_flags_other_students_only() -> None:
    student = Student(7, False, random.Random(0))
    student.scan(b"... stud07lbl ... stud07img\\.jpg ...", None)
    assert student.violations == []
    student.scan(b'{"label": "stud12lbl"} Image: **stud103img\\.jpg**', None)
    assert student.violations == ["stud07 was sent stud12lbl", "stud07 was sent stud103img"]


def test_tree_usage_reads_this_process() -> None:
    rss, cpu = tree_usage(os.getpid())
    status = Path("/proc/self/status").read_text()
    vm_rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    assert rss == pytest.approx(vm_rss * 1024, rel=0.2)
    assert cpu > 0


def test_photos_differ_per_student() -> None:
    a, b = student_photo(1, 64, 48), student_photo(2, 64, 48)
    assert a[:2] == b"\xff\xd8" and a != b and a == student_photo(1, 64, 48)


def test_arguments() -> None:
    args = parse_args(["--sessions", "10", "30", "--duration", "90"])
    assert args.sessions == [10, 30] and args.deadline == 90 + 120 + 30
    with pytest.raises(SystemExit):
        parse_args(["--upload-share", "1.5"])
