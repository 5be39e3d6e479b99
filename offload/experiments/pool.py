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

import pandas as pd
from tqdm import tqdm

from offload.experiments.jobs import Job, run_job


def _indexed(item: tuple[int, Job]) -> tuple[int, tuple[str, pd.DataFrame]]:
    return item[0], run_job(item[1])


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_jobs(
    jobs: dict[int, Job],
    workers: int,
    done: Callable[[int, tuple[str, pd.DataFrame]], None],
    *,
    total: int | None = None,
) -> None:
    """Run ``jobs`` (index -> job), calling ``done(index, result)`` as each one finishes.

    Raises:
        KeyboardInterrupt: on Ctrl-C; the workers are terminated first.
    """
    total = len(jobs) if total is None else total
    bar = tqdm(total=total, initial=total - len(jobs), desc="jobs", unit="job")
    try:
        if workers <= 1 or len(jobs) <= 1:
            for index, job in jobs.items():
                done(index, run_job(job))
                bar.update()
            return
        pool = multiprocessing.get_context().Pool(
            processes=min(workers, len(jobs)), initializer=_ignore_sigint
        )
        try:
            for index, result in pool.imap_unordered(_indexed, list(jobs.items())):
                done(index, result)
                bar.update()
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    finally:
        bar.close()
