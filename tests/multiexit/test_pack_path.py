"""Where the CIFAR-10 pack is looked for when no path is given: not only next to the source
file (wrong for a regular install into site-packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

import multiexit.data as data
from multiexit.errors import DataNotFoundError


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Path:
    """A package installed away from the checkout, run from the checkout's root."""
    monkeypatch.delenv(data.PACK_ENV, raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "venv" / "lib" / "site-packages")
    (tmp_path / "work" / "repo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "repo")
    return tmp_path


def test_pack_is_found_relative_to_the_working_directory(installed):
    beside_source = installed / "venv" / "lib" / "shared" / "data" / "cifar10_jpeg.npz"
    beside_cwd = installed / "work" / "shared" / "data" / "cifar10_jpeg.npz"
    assert data.pack_path_candidates() == [beside_source, beside_cwd]
    assert data.default_pack_path() == beside_source  # neither exists: the first is named
    beside_cwd.parent.mkdir(parents=True)
    beside_cwd.write_bytes(b"")
    assert data.default_pack_path() == beside_cwd


def test_environment_variable_alone_when_set(installed, monkeypatch):
    monkeypatch.setenv(data.PACK_ENV, str(installed / "elsewhere.npz"))
    (installed / "work" / "shared" / "data").mkdir(parents=True)
    (installed / "work" / "shared" / "data" / "cifar10_jpeg.npz").write_bytes(b"")
    # an explicit choice is never silently replaced by another copy
    assert data.pack_path_candidates() == [installed / "elsewhere.npz"]


def test_no_pack_anywhere_names_every_place_tried(installed):
    with pytest.raises(DataNotFoundError) as info:
        data.load_cifar10(source="pack")
    message = str(info.value)
    beside_source = installed / "venv" / "lib" / "shared" / "data" / "cifar10_jpeg.npz"
    beside_cwd = installed / "work" / "shared" / "data" / "cifar10_jpeg.npz"
    assert f"tried: JPEG pack {beside_source} or {beside_cwd}" in message
    assert "pass --pack PATH or set GRLE_CIFAR_PACK" in message
