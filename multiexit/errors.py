"""The errors a user of ``multiexit`` can meet; each message is one sentence saying what to do."""

from __future__ import annotations


class DataNotFoundError(FileNotFoundError):
    """No CIFAR-10 source could be found (the message lists the sources tried)."""


class ChecksumError(ValueError):
    """A file's sha256 differs from the expected value (corrupt or wrong file)."""


class UnknownStageError(ValueError):
    """A training stage other than ``main``, ``exits`` or ``all`` was requested."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model built from its configuration."""


class RunSettingsMismatchError(ValueError):
    """A run name is reused with settings other than those its saved stages were trained with."""


class OutputPathError(OSError):
    """An output path (run folder, export folder, CSV) cannot be created or written."""


class ManifestError(ValueError):
    """An exported run's ``manifest.json`` is unreadable or lacks a required field."""


class DeviceRecipeError(ValueError):
    """The training settings do not fit the devices (e.g. a global batch that does not split)."""
