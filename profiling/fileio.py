"""Atomic file output for profiling: :mod:`grle_common.fileio` (a temporary file in the target's
folder, then ``os.replace``, so a failure never leaves a half-written table behind) with
profiling's messages for a path that cannot be written."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from grle_common import fileio
from grle_common.fileio import sha256_file  # noqa: F401 - re-exported: profiling's digest
from profiling.errors import ProfilingError


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be created in it.

    Raises:
        ProfilingError: if the folder cannot be created or written to.
    """
    try:
        fileio.check_writable_dir(folder)
    except OSError as exc:
        raise ProfilingError(
            f"cannot write to {folder} ({exc.strerror or exc}); choose another output path."
        ) from None


def write_files_atomically(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write several files all-or-nothing (as far as the file system allows).

    Each ``writer(tmp_path)`` writes the content of one file to a temporary path in the
    target's folder; only when every writer has succeeded are the temporary files renamed onto
    their targets (:func:`grle_common.fileio.write_files_atomically`). On failure the temporary
    files are removed and no target is touched.

    Raises:
        ProfilingError: if a folder is not writable or a writer fails with an ``OSError``.
    """
    for folder in dict.fromkeys(Path(target).parent for target in writers):
        ensure_writable_dir(folder)  # every folder before the first writer runs
    try:
        fileio.write_files_atomically(writers)
    except OSError as exc:
        raise ProfilingError(
            f"cannot write {exc.filename or 'the output'} ({exc.strerror or exc}); "
            "choose another output path."
        ) from None
