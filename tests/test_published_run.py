"""The published run in ``checkpoints/``: complete, consistent, and as accurate as it says.

The run is the CPU-budget VGG-16 of docs/artifacts.md. The accuracy check evaluates the main
branch (exit 17) of the published float16 weights on a fixed, class-balanced slice of the
CIFAR-10 (JPEG copy) test set: the first ``PER_CLASS`` test images of every class, in the
pack's order (the pack stores the test images grouped by class, so its first N images would
all be airplanes). The test set has 1,000 images per class, so the slice has the same class
mix as the full set and its expected accuracy is the manifest's full-test-set accuracy. The
slice accuracy must lie within ``SIGMAS`` binomial standard errors of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from multiexit.data import TensorLoader, default_pack_path, load_cifar10
from multiexit.export import load_run

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "checkpoints" / "vgg16_cpu_budget"  # the published run (docs/artifacts.md)
LATENCY = RUN / "latency_cpu_1t"  # its measured CPU exit table, candidates and figure
PER_CLASS = 50  # test images per class in the slice: 500 in all
SIGMAS = 3.0  # tolerance in binomial standard errors of a 500-image accuracy
MAX_RUN_BYTES = 40_000_000  # a committed run stays under 40 MB


def manifest() -> dict:
    return json.loads((RUN / "manifest.json").read_text())


def test_run_is_complete_small_and_has_no_training_state():
    names = sorted(p.name for p in RUN.rglob("*") if p.is_file())
    for required in ("manifest.json", "model.safetensors", "exit_accuracy.csv"):
        assert required in names
    for required in ("exit_table.csv", "exit_table.json", "candidates.csv", "exits.png"):
        assert (LATENCY / required).is_file(), required
    assert not [n for n in names if n.endswith((".ckpt", ".pt", ".pth"))]
    assert sum(p.stat().st_size for p in RUN.rglob("*") if p.is_file()) < MAX_RUN_BYTES


def test_manifest_sha256_matches_weights_and_load_run_accepts_them():
    m = manifest()
    weights = RUN / m["weights"]["file"]
    data = weights.read_bytes()
    assert hashlib.sha256(data).hexdigest() == m["weights"]["sha256"]
    assert len(data) == m["weights"]["bytes"]
    model, loaded = load_run(RUN)  # re-checks the sha256, rebuilds the architecture
    assert loaded == m
    assert model.num_exits == 17 and m["config"]["width"] == 1.0
    assert "JPEG copy" in m["data_source"]


def test_tables_agree_with_the_manifest():
    m = manifest()
    acc = pd.read_csv(RUN / "exit_accuracy.csv")
    assert acc["exit"].tolist() == list(range(1, 18))
    assert acc["accuracy"].tolist() == pytest.approx(
        [m["accuracies"][str(e)] for e in range(1, 18)]
    )
    table = pd.read_csv(LATENCY / "exit_table.csv")
    assert table["accuracy"].tolist() == pytest.approx(acc["accuracy"].tolist())
    assert list(table.columns) == ["exit", "layer", "accuracy", "latency_ms:cpu_1t"]
    sidecar = json.loads((LATENCY / "exit_table.json").read_text())
    assert sidecar["source"] == "measured"
    assert sidecar["checkpoint_sha256"] == m["weights"]["sha256"]
    cand = pd.read_csv(LATENCY / "candidates.csv")
    chosen = json.loads((LATENCY / "candidates.json").read_text())["candidates"]["exits"]
    assert cand["exit"].tolist() == chosen and len(chosen) == 5 and chosen[-1] == 17
    merged = cand.merge(table, on=["exit", "layer"], suffixes=("", "_all"))
    assert merged["accuracy"].tolist() == merged["accuracy_all"].tolist()


def class_balanced_slice(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of every class, in the pack's order."""
    return torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(10)])


@pytest.mark.skipif(
    not default_pack_path().is_file(), reason=f"the CIFAR-10 pack {default_pack_path()} is absent"
)
def test_main_branch_accuracy_on_a_fixed_test_slice_matches_the_manifest():
    data = load_cifar10(source="pack")
    idx = class_balanced_slice(data.test_y, PER_CLASS)
    assert len(idx) == 10 * PER_CLASS
    assert torch.bincount(data.test_y[idx], minlength=10).tolist() == [PER_CLASS] * 10
    model, m = load_run(RUN)
    loader = TensorLoader(data.test_x[idx], data.test_y[idx], batch_size=100)
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model.forward_main(x).argmax(1) == y).sum())
    acc = correct / len(idx)
    expected = m["accuracies"]["17"]
    sigma = math.sqrt(expected * (1 - expected) / len(idx))
    assert abs(acc - expected) <= SIGMAS * sigma, (
        f"exit 17: {acc:.3f} on the {len(idx)}-image slice, manifest {expected:.4f} "
        f"(tolerance {SIGMAS:g} x {sigma:.4f})"
    )
    assert acc > 0.2  # far above chance (0.1) whatever the manifest says
