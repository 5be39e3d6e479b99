"""Where an experiment's files go, and how a run survives Ctrl-C.

Layout of an output folder (``--out``, default ``runs/offload/<experiment>-<UTC time>/``):

- ``.progress/config.json`` and ``.progress/jobs/<key>.pkl``: the configuration of the run and
  one file per finished job (a cell group, a convergence curve, the topology run), each written
  atomically the moment the job finishes. Rerunning the same command with the same ``--out``
  loads them and runs only the rest; the folder is removed once the final files are in place,
  and also when the run ends before any job finished (a folder the run created goes with it).
- the final output set: CSVs, figures, the Markdown report and ``manifest.json`` (command,
  configuration, the list of the run's files, git revision, package versions, machine). It is
  drawn in a staging folder beside them and moved in with SIGINT deferred, so it appears whole
  or not at all; the manifest moves in last.

Which run may write into a folder (:func:`claim`): an empty or new folder; the folder of the
same run (resume; finished: nothing to do); an unfinished run of other settings with no
finished job; and, with ``--overwrite``, any other finished or unfinished run. When a run
replaces a finished one, the old run's files (its manifest lists them; a manifest written
before that list: the folder's top-level files and ``actors/``) leave with the new set moving
in (:func:`commit`), so the folder never mixes two runs; sub-folders the old run did not write
(other runs' folders, e.g. ``results/regime``) are never touched. A folder with files but no
run (no ``manifest.json``, no ``.progress``) is refused.

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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

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


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None where it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _differences(old: Any, new: dict[str, Any]) -> str:
    """The top-level settings in which ``old`` (a run's configuration) differs from ``new``."""
    old = old if isinstance(old, dict) else {}
    return ", ".join(sorted(k for k in {*old, *new} if old.get(k) != new.get(k)))


class Claim(NamedTuple):
    """What a run may do with its output folder (:func:`claim`)."""

    done: bool  # the folder holds this finished run already: nothing to do
    replaces: tuple[str, ...]  # the finished run's files (relative) that this run's set replaces
    discard: bool  # delete the unfinished run of other settings before starting


def claim(out: Path, config: dict[str, Any], *, report: str, overwrite: bool) -> Claim:
    """Check, before anything is written, that a run of ``config`` may use ``out`` (the module
    docstring has the rules); ``report``: the report's file name.

    Raises:
        OutputError: ``out`` holds another run and ``overwrite`` is false, or files of no run.
    """
    if not out.is_dir():  # new (or not a folder: check_writable says so)
        return Claim(False, (), False)
    progress = Progress(out, config)
    unfinished = progress.root.exists()
    replaces: tuple[str, ...] = ()
    if (out / MANIFEST).exists():
        finished = _read_json(out / MANIFEST)
        old = finished.get("config") if isinstance(finished, dict) else None
        if old == config and not unfinished and (out / report).exists():
            return Claim(True, (), False)
        if old != config and not overwrite:
            command = finished.get("command") if isinstance(finished, dict) else None
            what = f"of `{command}`" if command else "with an unreadable manifest.json"
            raise OutputError(
                f"{out} holds the finished run {what} (other settings: "
                f"{_differences(old, config)}); pass --overwrite to replace its files with this "
                "run's, or pass a new --out."
            )
        replaces = run_files(out, finished)
    elif not unfinished:
        strays = sorted(p.name for p in out.iterdir() if p.is_file() and p.name[0] != ".")
        if strays:
            raise OutputError(
                f"{out} holds files of no experiment run (no {MANIFEST}: {', '.join(strays[:3])}"
                f"{', ...' if len(strays) > 3 else ''}); pass a new or empty folder with --out."
            )
    old = _read_json(progress.root / "config.json")
    discard = unfinished and old != config
    jobs = progress.finished_jobs()
    if discard and jobs and not overwrite:
        why = (
            f"other settings (differs in: {_differences(old, config)}; {jobs} of its jobs finished)"
            if isinstance(old, dict)
            else f"an unreadable {PROGRESS}/config.json ({jobs} of its jobs finished)"
        )
        raise OutputError(
            f"{out} holds an unfinished run with {why}; pass --overwrite to discard it and start "
            "this run, or pass a new --out."
        )
    return Claim(False, replaces, discard)


def run_files(out: Path, manifest: Any) -> tuple[str, ...]:
    """The files (relative to ``out``, that exist) of the finished run whose manifest is
    ``manifest``: the list it holds, or for a manifest without one (written before the list)
    the folder's top-level files and everything under ``actors/``, the only sub-folder a run
    writes. Never a hidden file or a path outside ``out``."""
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(listed, list) and all(isinstance(name, str) for name in listed):
        names = listed
    else:
        names = [p.name for p in out.iterdir() if p.is_file()]
        names += [str(p.relative_to(out)) for p in (out / "actors").rglob("*") if p.is_file()]
    return tuple(sorted(n for n in names if _inside(n) and (out / n).is_file()))


def _inside(name: str) -> bool:
    """Whether ``name`` is a relative path below its folder, no part of it hidden."""
    path = Path(name)
    return bool(path.parts) and not path.is_absolute() and all(p[0] != "." for p in path.parts)


def abandon(progress: Progress, created: Path | None) -> None:
    """Remove what a run that finished no job wrote: its ``.progress`` and, when the run created
    the output folder (``created``: the outermost folder it made), that folder."""
    progress.remove()
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)


class Progress:
    """The finished jobs of one run in ``<out>/.progress`` (see the module docstring)."""

    def __init__(self, out: Path, config: dict[str, Any]):
        self.root = out / PROGRESS
        self.jobs = self.root / "jobs"
        self.config = config

    def open(self, *, discard: bool = False) -> int:
        """Start or resume (``discard``: first delete the unfinished run of other settings that
        :func:`claim` allowed this run to replace); returns the number of finished jobs found.

        Raises:
            OutputError: the folder holds an unfinished run of another configuration (call
                :func:`claim` first: it says what to do).
        """
        if discard:
            self.remove()
        cfg = self.root / "config.json"
        if cfg.exists() and _read_json(cfg) != self.config:
            raise OutputError(
                f"{self.root.parent} holds an unfinished run with other settings; pass "
                "--overwrite to discard it, or pass a new --out."
            )
        self.jobs.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cfg, (json.dumps(self.config, indent=2, sort_keys=True) + "\n").encode())
        return self.finished_jobs()

    def finished_jobs(self) -> int:
        """How many job files the folder holds."""
        return len(list(self.jobs.glob("*.pkl"))) if self.jobs.is_dir() else 0

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


def commit(staged: Path, out: Path, replaces: Iterable[str] = ()) -> list[Path]:
    """Move every file of ``staged`` and of its sub-folders (the saved actors) into the same
    place under ``out`` (same file system: renames), SIGINT deferred, ``manifest.json`` last.

    ``replaces``: the files (relative to ``out``) of the finished run this set replaces. They are
    first moved aside into a hidden folder of ``out`` and deleted once the set is in, so the
    folder holds one run's files; when a move fails, every moved file goes back and the error
    propagates. Folders that the old files leave empty are removed. The old manifest is moved
    aside last: until then it lists the old files still there, so after a crash of the machine
    midway the same command (whose jobs are all saved) finishes the replacement.
    """
    names = sorted((p.relative_to(staged) for p in staged.rglob("*") if p.is_file()), key=_order)
    old = sorted((Path(n) for n in replaces if (out / n).is_file()), key=_order)
    with sigint_deferred():
        aside = Path(tempfile.mkdtemp(dir=out, prefix=".replaced-")) if old else None
        moves = [(out / n, aside / n) for n in old if aside] + [
            (staged / n, out / n) for n in names
        ]
        done: list[tuple[Path, Path]] = []
        try:
            for src, dst in moves:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                done.append((src, dst))
        except BaseException:
            for src, dst in reversed(done):
                with suppress(OSError):
                    os.replace(dst, src)
            if aside is not None and not any(p.is_file() for p in aside.rglob("*")):
                shutil.rmtree(aside, ignore_errors=True)  # all back (else kept: nothing lost)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
            for folder in sorted({(out / n).parent for n in old} - {out}, reverse=True):
                with suppress(OSError):  # not empty: the new set has files there too
                    folder.rmdir()
    return [out / n for n in names]


def record_files(out: Path, paths: Iterable[Path]) -> None:
    """Add ``paths`` (files under ``out``) to the file list of ``out``'s manifest, so that a run
    which replaces this one removes them too (``--rebuild-report`` may draw a figure the run
    did not); a manifest without a list is left as it is."""
    data = _read_json(out / MANIFEST)
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return
    files = sorted({*data["files"], *(str(p.relative_to(out)) for p in paths)})
    if files != data["files"]:
        data["files"] = files
        write_bytes_atomic(
            out / MANIFEST, (json.dumps(data, indent=2, default=str) + "\n").encode()
        )


def _order(name: Path) -> tuple[bool, Path]:
    """Sort key: the manifest after every other file."""
    return name == Path(MANIFEST), name


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


def memory_bytes() -> int | None:
    """The memory this process may use, bytes: the machine's (``os.sysconf``), or the limit of
    its cgroup where lower (a container); None where neither can be read."""
    limits = []
    with suppress(OSError, ValueError, AttributeError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for cgroup in ("memory.max", "memory/memory.limit_in_bytes"):  # v2 ("max": none), v1
        with suppress(OSError, ValueError):
            limits.append(int(Path("/sys/fs/cgroup", cgroup).read_text().strip()))
    return min(limits) if limits else None


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
    files: Iterable[str] = (),
) -> str:
    """The JSON text of ``manifest.json`` (``exits``: the exit table's path as given;
    ``backend`` and ``address``: where the jobs ran, see :func:`offload.experiments.pool.run_jobs`;
    ``files``: the run's other files, relative to its folder; the manifest adds itself)."""
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
        "files": sorted({*files, MANIFEST}),
    }
    return json.dumps(data, indent=2, default=str) + "\n"
