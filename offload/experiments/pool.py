"""The execution of an experiment's jobs: in this process or in ``--workers`` processes, each
finished job handed to a callback (which saves it) the moment it finishes.

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


class Job:
    """A job of :func:`run_jobs`: a frozen dataclass that says what to run, whose :meth:`run`
    gives its result rows. A subclass names its kind: ``class Cell(Job, kind="cell")``."""

    kind: ClassVar[str]  # names the job's progress file (store.job_key)
    result_kind: ClassVar[str]  # the results its rows join ("cell" for a lockstep group)

    def __init_subclass__(cls, *, kind: str, result_kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
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
) -> None:
    """Run ``jobs`` (index -> job), calling ``done(index, rows)`` as each one finishes.

    Raises:
        KeyboardInterrupt: on Ctrl-C; the workers are terminated first.
    """
    total = len(jobs) if total is None else total
    bar = tqdm(total=total, initial=total - len(jobs), desc="jobs", unit="job")
    try:
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
    finally:
        bar.close()
