"""The ``--backend ray`` execution of an experiment's jobs: one Ray task per job, on a local Ray
instance or on a running cluster (``--address``), each finished job handed to the same callback
as the local pool's, in the order the jobs finish.

A job is a frozen dataclass (:class:`offload.experiments.pool.Job`) whose ``*_path`` fields name
input files and ``*_dir`` fields output folders (the convention :func:`store.job_key` relies on
too). A node of a multi-node cluster need not share the head's file system: each task carries
the bytes of its input files, runs the job with those fields pointed at a temporary folder on its
node, and sends back the files the job wrote there, which the head writes where the job would
have written them. The numbers do not depend on the paths, so a Ray run writes the same files as
a local one. Every task asks for one CPU, and each job sets torch's threads to one itself, as in
the local pool (Ray also sets ``OMP_NUM_THREADS`` to a task's CPUs when the node has not set it).

A lost node, worker or connection (any Ray error that is not a job's own exception) ends the
run with :class:`ClusterLost`; the jobs finished before it are saved, so the command line
reports them and how to resume.

Ray is an optional dependency (``pip install -e '.[cluster]'``): nothing here imports it until a
run asks for it.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from grle_common.cli import UserError
from grle_common.fileio import write_bytes_atomic

InputFiles = dict[str, tuple[str, bytes]]  # field -> (file name, content)
OutputFiles = dict[tuple[str, str], bytes]  # (field, path below the folder) -> content


class BackendError(UserError):
    """The Ray backend cannot run (Ray missing, no cluster at the address); one sentence says
    what to do."""


class ClusterLost(BackendError):
    """Ray lost a node, a worker or the connection to the cluster during a run; the message
    names Ray's error in one line."""


def require_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        BackendError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise BackendError(
            "--backend ray needs Ray, which is not installed; install it with "
            "pip install -e '.[cluster]' (or drop --backend ray to run in local processes)."
        ) from None
    return ray


def _fields(job: Any, suffix: str) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(job)
        if f.name.endswith(suffix) and getattr(job, f.name) is not None
    ]


def input_files(job: Any) -> InputFiles:
    """The bytes of every input file of ``job`` (its ``*_path`` fields), read here on the head."""
    return {
        name: (Path(getattr(job, name)).name, Path(getattr(job, name)).read_bytes())
        for name in _fields(job, "_path")
    }


def run_on_node(job: Any, inputs: InputFiles) -> tuple[pd.DataFrame, OutputFiles]:
    """Run ``job`` on this node with its input files written from ``inputs`` and its output
    folders in a temporary folder; returns its rows and the files it wrote there."""
    with tempfile.TemporaryDirectory(prefix="offload-job-") as tmp:
        moved: dict[str, str] = {}
        for name, (filename, data) in inputs.items():
            path = Path(tmp, "in", name, filename)
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
            moved[name] = str(path)
        outputs = {name: Path(tmp, "out", name) for name in _fields(job, "_dir")}
        for name, folder in outputs.items():
            folder.mkdir(parents=True)
            moved[name] = str(folder)
        rows = dataclasses.replace(job, **moved).run()
        files = {
            (name, str(p.relative_to(folder))): p.read_bytes()
            for name, folder in outputs.items()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
    return rows, files


def write_outputs(job: Any, files: OutputFiles) -> None:
    """Write the files a job wrote on its node where it would have written them here."""
    for (name, relative), data in files.items():
        write_bytes_atomic(Path(getattr(job, name)) / relative, data)


def check_address(address: str | None) -> None:
    """Refuse an ``--address`` that Ray cannot read, before any work (Ray's own error is a
    traceback): ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` pass.

    Raises:
        BackendError: ``address`` has another form.
    """
    if address is None or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not (sep and host and "/" not in host and port.isdigit() and 0 < int(port) < 65536):
        raise BackendError(
            f"--address {address} is not a Ray address; pass `auto` on a node of the cluster, "
            "HOST:PORT of its head (e.g. 10.0.0.5:6379) or ray://HOST:PORT for Ray Client "
            "(port 10001)."
        )


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters), for a one-line error."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


@contextmanager
def session(address: str | None, workers: int) -> Iterator[ModuleType]:
    """The ``ray`` module, connected to the cluster at ``address`` or to a new local instance of
    ``workers`` CPUs for the length of the block (then shut down). A connection made before
    (e.g. by a test) is used as it is and left open.

    Raises:
        BackendError: Ray is not installed, or no cluster answers at ``address``.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except ValueError as exc:  # an address Ray cannot use (ray://: Ray Client not installed)
        raise BackendError(
            f"Ray cannot connect to --address {address} ({_first_line(exc)}); pass `auto`, "
            "HOST:PORT of the head, or install Ray Client (pip install 'ray[client]') for ray://."
        ) from None
    except ConnectionError as exc:
        raise BackendError(
            f"no Ray cluster answers at --address {address} ({exc}); start one with "
            "`ray start --head` and pass its address (or `auto` on a node of it), and where it "
            "authenticates by token set RAY_AUTH_MODE=token and its token (`ray get-auth-token`)."
        ) from None
    try:
        yield ray
    finally:
        with suppress(Exception):  # after a lost node Ray may fail to stop what is gone
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail at once where nothing listens at a ``HOST:PORT`` address (Ray itself retries for
    minutes); ``auto`` and ``ray://`` addresses are left to Ray.

    Raises:
        BackendError: nothing accepts a connection at ``address`` within 5 s.
    """
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5.0).close()
    except OSError as exc:
        raise BackendError(
            f"nothing answers at --address {address} ({exc.strerror or exc}); start the cluster "
            "with `ray start --head` and pass the address it prints (or `auto` on a node of it)."
        ) from None


def run_tasks(
    ray: ModuleType,
    jobs: dict[int, Any],
    done: Callable[[int, pd.DataFrame], None],
    update: Callable[[], object],
) -> None:
    """Run ``jobs`` (index -> job) as Ray tasks of one CPU each, calling ``done(index, rows)``
    and then ``update()`` as each one finishes.

    Raises:
        KeyboardInterrupt: on Ctrl-C; the tasks still running are cancelled first.
        ClusterLost: Ray lost a node, a worker or the connection (the jobs handed to ``done``
            before it stay done).
        Exception: what a job raised (the first to fail; the others are cancelled).
    """
    pending: dict[Any, int] = {}
    try:
        task = ray.remote(num_cpus=1)(run_on_node)
        pending = {task.remote(job, input_files(job)): index for index, job in jobs.items()}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                rows, files = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # the job's own exception, as locally
                cause = getattr(exc, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from exc
                raise
            write_outputs(jobs[index], files)
            done(index, rows)
            update()
    except (ray.exceptions.RayError, ConnectionError) as exc:
        _cancel(ray, pending)
        task_error = ray.exceptions.RayTaskError
        if isinstance(exc, task_error) or isinstance(exc.__cause__, task_error):  # a job's own
            raise
        raise ClusterLost(f"Ray lost a node or the connection ({_first_line(exc)})") from None
    except BaseException:
        _cancel(ray, pending)
        raise


def _cancel(ray: ModuleType, refs: Iterable[Any]) -> None:
    """Cancel the tasks still running; a cluster that is gone cannot, and need not."""
    for ref in refs:
        with suppress(Exception):
            ray.cancel(ref, force=True)
