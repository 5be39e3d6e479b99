"""The execution of an experiment's jobs: in this process or in ``--workers`` processes (the
``local`` backend), or as Ray tasks (``--backend ray``, :mod:`offload.experiments.ray_backend`);
either way each finished job is handed to a callback (which saves it) the moment it finishes.

A Ctrl-C reaches the main process as ``KeyboardInterrupt``; worker processes ignore SIGINT (a
terminal sends it to the whole process group) and are terminated by the main process, so the
user sees one message from the command line instead of a traceback per worker.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from typing import Any, ClassVar

import pandas as pd
from tqdm import tqdm

BACKENDS = ("local", "ray")  # where the jobs run: this machine's processes, or a Ray cluster


class Job:
    """A job of :func:`run_jobs`: a frozen dataclass that says what to run, whose :meth:`run`
    gives its result rows. A subclass names its kind: ``class Cell(Job, kind="cell")``."""

    kind: ClassVar[str]  # names the job's progress file (store.job_key)
    result_kind: ClassVar[str]  # the results its rows join ("cell" for a lockstep group)

    def __init_subclass__(cls, *, kind: str = "", result_kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not kind:  # a class rebuilt by cloudpickle (defined in a script, sent to Ray): its
            return  # attributes, ``kind`` included, are restored right after
        cls.kind = kind
        cls.result_kind = result_kind or kind

    def run(self) -> pd.DataFrame:
        """Run the job; one row per result."""
        raise NotImplementedError


def _indexed(item: tuple[int, Job]) -> tuple[int, pd.DataFrame]:
    return item[0], item[1].run()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_jobs(
    jobs: dict[int, Job],
    workers: int,
    done: Callable[[int, pd.DataFrame], None],
    *,
    total: int | None = None,
    backend: str = "local",
    address: str | None = None,
) -> None:
    """Run ``jobs`` (index -> job), calling ``done(index, rows)`` as each one finishes.

    ``workers``: processes of the local backend, CPUs of a local Ray instance; ``total``: the
    experiment's job count (the progress bar starts at the jobs finished before); ``backend``:
    one of :data:`BACKENDS`; ``address``: the Ray cluster to join (``auto``, ``HOST:6379`` or
    ``ray://HOST:10001``; default: start a local instance).

    Raises:
        BackendError: ``backend="ray"`` without Ray, or no cluster at ``address``.
        KeyboardInterrupt: on Ctrl-C; the workers are terminated (Ray: the tasks cancelled) first.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    total = len(jobs) if total is None else total
    if backend == "ray" and jobs:
        from offload.experiments import ray_backend  # imports ray only now

        with ray_backend.session(address, workers) as ray:  # Ray's own messages before the bar
            with _bar(total, len(jobs)) as bar:
                ray_backend.run_tasks(ray, jobs, done, bar.update)
        return
    with _bar(total, len(jobs)) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for index, job in jobs.items():
                done(index, job.run())
                bar.update()
            return
        pool = multiprocessing.get_context().Pool(
            processes=min(workers, len(jobs)), initializer=_ignore_sigint
        )
        try:
            for index, rows in pool.imap_unordered(_indexed, list(jobs.items())):
                done(index, rows)
                bar.update()
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()


def _bar(total: int, todo: int) -> tqdm:
    """The progress bar of ``total`` jobs, ``todo`` of them still to run."""
    return tqdm(total=total, initial=total - todo, desc="jobs", unit="job")
