"""The errors a user of ``multiexit`` can meet; each message is one sentence saying what to do.

Every one is a :class:`MultiexitError`, a :class:`grle_common.cli.UserError`: the command lines
print it as ``error: <message>`` with exit status 2. Each also keeps the built-in type it had
(``ValueError``, ``FileNotFoundError``, ``OSError``), so callers that catch those still do.
"""

from __future__ import annotations

from grle_common.cli import UserError


class MultiexitError(UserError):
    """Any error of ``multiexit`` that a user can fix."""


class DataNotFoundError(MultiexitError, FileNotFoundError):
    """No CIFAR-10 source could be found (the message lists the sources tried)."""


class CheckpointNotFoundError(MultiexitError, FileNotFoundError):
    """An exported run, its weights file or a checkpoint to start stage exits from is missing."""


class ChecksumError(MultiexitError, ValueError):
    """A file's sha256 differs from the expected value (corrupt or wrong file)."""


class UnknownStageError(MultiexitError, ValueError):
    """A training stage other than ``main``, ``exits`` or ``all`` was requested."""


class CheckpointMismatchError(MultiexitError, ValueError):
    """A checkpoint's tensors do not fit the model built from its configuration."""


class RunSettingsMismatchError(MultiexitError, ValueError):
    """A run name is reused with settings other than those its saved stages were trained with."""


class OutputPathError(MultiexitError, OSError):
    """An output path (run folder, export folder, CSV) cannot be created or written."""


class ManifestError(MultiexitError, ValueError):
    """An exported run's ``manifest.json`` is unreadable or lacks a required field."""


class DeviceRecipeError(MultiexitError, ValueError):
    """The training settings do not fit the devices (e.g. a global batch that does not split)."""


class CheckpointDamagedError(MultiexitError, ValueError):
    """A checkpoint or weights file exists but cannot be read (truncated, corrupt, foreign)."""


class DeviceUnavailableError(MultiexitError, ValueError):
    """The accelerator or devices asked for are not on this machine (e.g. a GPU without CUDA)."""


class RunPlanError(MultiexitError, ValueError):
    """Numbers that are each valid but do not fit together or the data (e.g. a validation split
    as large as the training set, or a fraction of an epoch that is less than one batch)."""
