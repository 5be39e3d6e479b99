"""Atomic file output: every file is written under a temporary name in its own folder and then
renamed with ``os.replace``, so a failure never leaves a half-written table behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from profiling.errors import ProfilingError


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be created in it.

    Raises:
        ProfilingError: if the folder cannot be created or written to.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-", delete=True):
            pass
    except OSError as exc:
        raise ProfilingError(
            f"cannot write to {folder} ({exc.strerror or exc}); choose another output path."
        ) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files_atomically(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write several files all-or-nothing (as far as the file system allows).

    Each ``writer(tmp_path)`` writes the content of one file to a temporary path in the
    target's folder; only when every writer has succeeded are the temporary files renamed onto
    their targets. On failure the temporary files are removed and no target is touched.

    Raises:
        ProfilingError: if a folder is not writable or a writer fails with an ``OSError``.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, writer in writers.items():
            target = Path(target)
            ensure_writable_dir(target.parent)
            fd, tmp_name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + target.suffix
            )
            os.close(fd)
            staged.append((Path(tmp_name), target))
            writer(Path(tmp_name))
        mode = 0o666 & ~_umask()  # mkstemp makes 0600 files; give the usual permissions
        for tmp, target in staged:
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        staged.clear()
    except OSError as exc:
        raise ProfilingError(
            f"cannot write {exc.filename or 'the output'} ({exc.strerror or exc}); "
            "choose another output path."
        ) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write one text file atomically (UTF-8)."""
    write_files_atomically({Path(path): lambda tmp: tmp.write_text(text, encoding="utf-8")})


def sha256_file(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
