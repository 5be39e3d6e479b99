"""Where an experiment's files go, and how a run survives Ctrl-C.

Layout of an output folder (``--out``, default ``runs/offload/<experiment>-<UTC time>/``):

- ``.progress/config.json`` and ``.progress/jobs/<key>.pkl``: the configuration of the run and
  one file per finished job (a cell group, a convergence curve, the topology run), each written
  atomically the moment the job finishes. Rerunning the same command with the same ``--out``
  loads them and runs only the rest; the folder is removed once the final files are in place.
- the final output set: CSVs, figures, the Markdown report and ``manifest.json`` (command,
  configuration, git revision, package versions, machine). It is drawn in a staging folder
  beside them and moved in with SIGINT deferred, so it appears whole or not at all.

Nothing here imports torch: the manifest asks for package versions by distribution name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from grle_common.cli import UserError
from grle_common.fileio import check_writable_dir, sha256_file, write_bytes_atomic

PROGRESS = ".progress"
MANIFEST = "manifest.json"
PACKAGES = ("numpy", "pandas", "torch", "torch-geometric", "gymnasium", "matplotlib")


class OutputError(UserError):
    """An output folder cannot be used; the message is one sentence that says what to do."""


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when it lies below it (reports stay portable)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def utc_stamp() -> str:
    """``YYYYmmddTHHMMSSZ`` for run folder names."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def default_out(experiment: str, root: Path = Path("runs/offload")) -> Path:
    """A new folder ``runs/offload/<experiment>-<UTC time>`` (``-2``, ``-3`` … on a clash)."""
    base = root / f"{experiment}-{utc_stamp()}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_writable(folder: Path) -> None:
    """Create ``folder`` (and parents) and prove a file can be made in it, before any work.

    Raises:
        OutputError: the folder cannot be created or written (e.g. it lies under a regular file,
            or the disk is read-only).
    """
    try:
        check_writable_dir(folder)
    except OSError as exc:
        raise OutputError(
            f"cannot write to the output folder {folder} ({exc.strerror or exc}); "
            "pass a writable folder with --out."
        ) from None


#: hex sha256 of a file's bytes (:func:`grle_common.fileio.sha256_file`, the same digest)
file_sha256 = sha256_file


class Progress:
    """The finished jobs of one run in ``<out>/.progress`` (see the module docstring)."""

    def __init__(self, out: Path, config: dict[str, Any]):
        self.root = out / PROGRESS
        self.jobs = self.root / "jobs"
        self.config = config

    def open(self) -> int:
        """Start or resume; returns the number of finished jobs found.

        Raises:
            OutputError: the folder holds an unfinished run of another configuration.
        """
        cfg = self.root / "config.json"
        if cfg.exists():
            try:
                old = json.loads(cfg.read_text())
            except (OSError, ValueError):
                raise OutputError(
                    f"{cfg} is unreadable, so the unfinished run in {self.root.parent} cannot be "
                    f"resumed; delete {self.root} to start it over, or pass a new --out."
                ) from None
            if not isinstance(old, dict):
                old = {}
            if old != self.config:
                diff = sorted(k for k in {*old, *self.config} if old.get(k) != self.config.get(k))
                raise OutputError(
                    f"{self.root.parent} holds an unfinished run with other settings (differs in: "
                    f"{', '.join(diff)}); rerun that command to finish it, or pass a new --out."
                )
        self.jobs.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cfg, (json.dumps(self.config, indent=2, sort_keys=True) + "\n").encode())
        return len(list(self.jobs.glob("*.pkl")))

    def path(self, key: str) -> Path:
        return self.jobs / f"{key}.pkl"

    def load(self, key: str) -> Any | None:
        """The saved result of job ``key``, or None when it has not finished."""
        p = self.path(key)
        if not p.exists():
            return None
        try:
            with open(p, "rb") as fh:  # our own files, written atomically by save() below
                return pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
            return None  # unreadable (or from an incompatible version): the job runs again

    def save(self, key: str, result: Any) -> None:
        write_bytes_atomic(self.path(key), pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def job_key(index: int, job: Any) -> str:
    """A stable name for a job (a dataclass with a ``kind``, :class:`offload.experiments.pool.Job`):
    its position, kind and a hash of its description (without the paths, which depend on the
    working directory; the run's config.json pins the table)."""
    paths = {f.name: None for f in dataclasses.fields(job) if f.name.endswith(("_path", "_dir"))}
    digest = hashlib.sha256(repr(dataclasses.replace(job, **paths)).encode()).hexdigest()[:12]
    return f"{index:03d}-{job.kind}-{digest}"


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends (it is re-raised then), so a file set is moved whole."""
    pending: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda *_: pending.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out``; removed afterwards whatever happens."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit(staged: Path, out: Path) -> list[Path]:
    """Move every file of ``staged`` and of its sub-folders (the saved actors) into the same
    place under ``out`` (same file system: renames), SIGINT deferred."""
    names = sorted(p.relative_to(staged) for p in staged.rglob("*") if p.is_file())
    with sigint_deferred():
        for name in names:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / name, out / name)
    return [out / n for n in names]


def git_revision(repo: Path) -> str:
    """``<commit>`` (``+dirty`` when tracked files differ from it), or ``unknown``."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers (Python included)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """Host, processor and the CPU cores this process may use."""
    return {
        "host": platform.node() or "unknown",
        "system": f"{platform.system()} {platform.release()}",
        "processor": platform.processor() or platform.machine(),
        "cpu_cores_available": len(os.sched_getaffinity(0)),
    }


def manifest(
    argv: list[str],
    config: dict[str, Any],
    *,
    started: str,
    wall_s: float,
    jobs_total: int,
    jobs_resumed: int,
    workers: int,
    exits: str,
    backend: str = "local",
    address: str | None = None,
) -> str:
    """The JSON text of ``manifest.json`` (``exits``: the exit table's path as given;
    ``backend`` and ``address``: where the jobs ran, see :func:`offload.experiments.pool.run_jobs`)."""
    data = {
        "command": "python -m offload.experiments " + " ".join(argv),
        "argv": [sys.executable, "-m", "offload.experiments", *argv],
        "exit_table": exits,
        "config": config,
        "git_revision": git_revision(Path(__file__).resolve().parents[2]),
        "packages": package_versions(),
        "machine": machine(),
        "workers": workers,
        "backend": backend,
        "address": address,
        "started_utc": started,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s_this_invocation": round(wall_s, 3),
        "jobs": jobs_total,
        "jobs_resumed": jobs_resumed,
    }
    return json.dumps(data, indent=2, default=str) + "\n"
