"""Shared fixtures: a learnable synthetic CIFAR-like set and a tiny JPEG pack."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multiexit.data import CifarArrays

PALETTE = [
    (220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40), (220, 40, 220),
    (40, 220, 220), (220, 220, 220), (40, 40, 40), (220, 130, 40), (130, 40, 220),
]  # fmt: skip


def synthetic_arrays(n_train: int = 320, n_test: int = 100, seed: int = 0) -> CifarArrays:
    """Ten classes, each a well-separated colour plus noise: learnable in a few steps.

    The colours differ in hue or (by 5x) in brightness, so the zero padding of random crops
    (at most 23 % of a crop) cannot make one class look like another.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.tensor(PALETTE, dtype=torch.float32).view(10, 3, 1, 1)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 10
        noise = torch.randn(n, 3, 32, 32, generator=g) * 12
        x = (templates[y] + noise).clamp(0, 255).to(torch.uint8)
        return x, y

    tx, ty = make(n_train)
    sx, sy = make(n_test)
    return CifarArrays(tx, ty, sx, sy, "synthetic (tests)")


@pytest.fixture
def arrays() -> CifarArrays:
    return synthetic_arrays()


@pytest.fixture
def make_arrays():
    return synthetic_arrays


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    """Split a baseline JPEG after its start-of-scan segment: (header, entropy-coded payload)."""
    sos = data.index(b"\xff\xda")
    length = int.from_bytes(data[sos + 2 : sos + 4], "big")
    return data[: sos + 2 + length], data[sos + 2 + length :]


def write_pack(path: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> tuple[str, dict]:
    """Write a small pack in the layout of shared/data/README.md; returns (sha256, truth)."""
    rng = np.random.default_rng(seed)
    arrays, header = {}, None
    truth = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        # smooth images (colour + gradient) so that JPEG's loss stays small and checkable
        colour = rng.integers(30, 200, (n, 1, 1, 3))
        ramp = np.arange(32)[None, None, :, None] * rng.integers(0, 2, (n, 1, 1, 3))
        images = np.broadcast_to(colour + ramp, (n, 32, 32, 3)).astype(np.uint8)
        payloads = []
        for img in images:
            head, payload = _split_header(_jpeg(img))
            assert header is None or head == header, "PIL headers differ between images"
            header = head
            payloads.append(np.frombuffer(payload, dtype=np.uint8))
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in payloads])]).astype(np.int64)
        arrays[f"{split}_payload"] = np.concatenate(payloads)
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_labels"] = labels
        truth[split] = (images, labels)
    arrays["jpeg_header"] = np.frombuffer(header, dtype=np.uint8)
    arrays["classes"] = np.array([f"c{i}" for i in range(10)])
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return hashlib.sha256(path.read_bytes()).hexdigest(), truth


@pytest.fixture
def pack(tmp_path: Path) -> tuple[Path, str, dict]:
    path = tmp_path / "pack.npz"
    sha, truth = write_pack(path)
    return path, sha, truth


REPO = Path(__file__).resolve().parents[2]
# Runs a multiexit CLI as `python -m` does (runpy, __main__), with the synthetic set in place
# of CIFAR-10: only the data source is replaced (and whatever `setup` adds), everything the
# CLI prints is real.
CLI_RUNNER = """
import runpy, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import multiexit.data as data
from conftest import synthetic_arrays
data.resolve_source = lambda *a, **k: ("pack", Path("synthetic"))
data.load_cifar10 = lambda **k: synthetic_arrays()
{setup}
sys.argv = [{module!r}, *sys.argv[1:]]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


def cli_runner(folder: Path, module: str, setup: str = "") -> Path:
    """Write the script that runs ``python -m module`` on the synthetic set (after the Python
    code ``setup``) into ``folder``; returns its path (run it with ``sys.executable``)."""
    script = folder / f"run_{module.replace('.', '_')}.py"
    script.write_text(
        CLI_RUNNER.format(tests=str(Path(__file__).parent), module=module, setup=setup)
    )
    return script


@pytest.fixture
def synthetic_cli(tmp_path: Path):
    """``run(module, *args)``: the CLI ``python -m module args`` on the synthetic set, in a
    subprocess (so that its warning filters and logging setup are its own)."""
    import subprocess
    import sys

    def run(module: str, *args: str) -> subprocess.CompletedProcess:
        script = cli_runner(tmp_path, module)
        return subprocess.run(
            [sys.executable, str(script), *args],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    return run


@pytest.fixture
def synthetic_data(monkeypatch):
    """In-process ``multiexit.train.main``: the synthetic set stands in for CIFAR-10 (its
    sizes are CIFAR-10's for the checks, which never read the data)."""
    import multiexit.data as data
    import multiexit.runs as runs

    monkeypatch.setattr(runs, "resolve_source", lambda *a, **k: ("pack", Path("synthetic")))
    monkeypatch.setattr(data, "load_cifar10", lambda **k: synthetic_arrays())
