"""Long work off the page script: training runs as a job in a worker thread that pages poll.

A page script must finish quickly (every widget change reruns it), and a student who trains
and then looks at another page must not stop the training. So a :class:`Job` runs in one of a
:class:`JobQueue`'s worker threads: the session keeps only the job object and its pages read
its progress. The queue bounds how many jobs run at once on the server; the others wait in
order, and each knows its place in the line.

Nothing here imports streamlit: a job's work must not touch session state (it runs in no
session's thread). It reports through :meth:`Job.report` and ends with a result that the
session takes when it next runs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("frcnn_explorer")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class Cancelled(Exception):
    """Raised inside a job's work by :meth:`Job.check` once the job was cancelled."""


@dataclass(eq=False)
class Job:
    """One piece of work and what is known of it.

    Attributes:
        work: ``work(job) -> result``; calls :meth:`check` between steps and :meth:`report`
            with its progress.
        title: what it is, for people.
        state: queued, running, done, failed or cancelled.
        progress: the latest report (any dict the page knows how to show).
        result: what ``work`` returned (or, after a cancel, what it chose to keep).
        error: one line for the user when it failed.
    """

    work: Callable[[Job], Any]
    title: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    progress: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; a queued job never starts, a running one stops at its next
        :meth:`check`."""
        self._cancel.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when the job was asked to stop."""
        if self._cancel.is_set():
            raise Cancelled

    def report(self, **progress: Any) -> None:
        self.progress = {**self.progress, **progress}

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; False on timeout."""
        return self._done.wait(timeout)


class JobQueue:
    """At most ``workers`` jobs run at once; the others wait in submission order.

    Worker threads are daemons started on demand, one per running job.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self._lock = threading.Lock()

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._waiting.append(job)
        self._start_next()
        return job

    def ahead(self, job: Job) -> int:
        """How many jobs are ahead of this one: those running and those queued before it (0
        once it runs)."""
        with self._lock:
            if job not in self._waiting:
                return 0
            return len(self._running) + self._waiting.index(job)

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._lock:
            return len(self._running), len(self._waiting)

    def _start_next(self) -> None:
        with self._lock:
            while self._waiting and len(self._running) < self.workers:
                job = self._waiting.pop(0)
                if job.cancelled:
                    job.state = CANCELLED
                    job.finished = time.monotonic()
                    job._done.set()
                    continue
                self._running.append(job)
                job.state = RUNNING
                job.started = time.monotonic()
                threading.Thread(
                    target=self._run, args=(job,), name=f"job-{job.id[:8]}", daemon=True
                ).start()

    def _run(self, job: Job) -> None:
        try:
            job.result = job.work(job)
            job.state = CANCELLED if job.cancelled else DONE
        except Cancelled:
            job.state = CANCELLED
        except Exception as exc:
            log.exception("job %s failed", job.title)
            job.error = str(exc) or type(exc).__name__
            job.state = FAILED
        finally:
            job.finished = time.monotonic()
            with self._lock:
                self._running.remove(job)
            job._done.set()
            self._start_next()
