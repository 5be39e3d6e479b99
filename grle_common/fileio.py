"""Atomic file output and file digests, the one implementation for all three packages.

Every file is written under a temporary name in its target's folder and then renamed onto the
target with ``os.replace`` (atomic within one file system), so a reader sees the old file or the
new one, never half of one; when a writer fails, its temporary file is removed and the target
is left as it was. There is no fsync: a crash of the machine (not of the process) may still lose
the newest version of a file. The digests recorded in manifests and sidecars come from
:func:`sha256_file`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

Writer = Callable[[Path], object]  # fills the temporary file it is given


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files_atomically(writers: Mapping[str | os.PathLike[str], Writer]) -> None:
    """Write several files all or nothing (as far as the file system allows).

    Each ``writer(tmp)`` fills a temporary file beside its target, named
    ``.<name>.<random>.tmp<suffix>`` (the target's suffix is kept for writers that choose the
    format by it, such as matplotlib's ``savefig``); only when every writer has succeeded are
    the temporary files renamed onto their targets, in the order given. Missing parent folders
    are created. The files get the usual permissions (``0o666`` less the umask), not the 0600 of
    a temporary file.

    Raises:
        OSError: a folder cannot be created or written, or a rename fails.
        Exception: whatever a writer raises. In every case the temporary files are removed and
            no target has been touched (unless a rename failed after an earlier one succeeded).
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, writer in writers.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
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
    finally:  # after a failure: a temporary file already renamed is gone, the others go now
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Writer) -> Path:
    """Write one file atomically: ``write(tmp)`` fills a temporary file beside ``path``, which is
    then renamed onto ``path`` (see :func:`write_files_atomically`); returns ``path``.

    Raises:
        OSError, or whatever ``write`` raises; ``path`` is then unchanged and no temporary file
        is left.
    """
    write_files_atomically({path: write})
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def check_writable_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) if needed and prove that a file can be made in it, so
    that a bad output path fails before the work rather than after it; returns the folder.

    Raises:
        OSError: the folder cannot be created (e.g. it lies under a regular file) or written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
        pass
    return folder


def created_root(folder: str | os.PathLike[str]) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (what creating
    ``folder`` creates), or None when ``folder`` exists."""
    root = None
    folder = Path(folder).absolute()
    for path in (folder, *folder.parents):
        if path.exists():
            return root
        root = path
    return root


def sha256_file(path: str | os.PathLike[str], *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks of ``chunk_bytes`` (1 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
