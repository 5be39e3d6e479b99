"""The published run in ``checkpoints/``: complete, consistent, and as accurate as it says.

The run is the CPU reference VGG-16 of docs/artifacts.md. The accuracy check evaluates every
published exit (1-17) of the published float16 weights, in one pass, on a fixed,
class-balanced slice of the CIFAR-10 (JPEG copy) test set: the first ``PER_CLASS`` test images
of every class, in the pack's order (the pack stores the test images grouped by class, so its
first N images would all be airplanes). The test set has 1,000 images per class, so the slice
has the same class mix as the full set and the expected accuracy of exit e on it is the
manifest's full-test-set accuracy p_e. Exit e's slice accuracy must lie within z binomial
standard errors sqrt(p_e (1 - p_e) / n) of p_e, n the slice size, with z chosen so that a
correct manifest fails any of the 17 checks with probability at most ``FAMILY_RISK``
(Bonferroni: each exit gets FAMILY_RISK / 17, two-sided; z = 3.78 for 0.27 %, the one-check
3-sigma rate). Drawing the slice without replacement from the 10,000 images only narrows the
true spread (by a factor 0.97 at n = 500), so the binomial error is the conservative one.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from statistics import NormalDist

import pandas as pd
import pytest
import torch

from multiexit.data import TensorLoader
from multiexit.export import load_run

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "checkpoints" / "vgg16_cpu_ref"  # the published run (docs/artifacts.md)
LATENCY = RUN / "latency_cpu_1t"  # its measured CPU exit table, candidates and figure
PER_CLASS = 50  # test images per class in the slice: 500 in all
NUM_EXITS = 17
FAMILY_RISK = 0.0027  # chance that a correct manifest fails any exit's check
Z = NormalDist().inv_cdf(1 - FAMILY_RISK / (2 * NUM_EXITS))  # standard errors allowed per exit
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
    assert model.num_exits == 17
    config = (m["config"]["width"], m["config"]["head"])
    assert config == (model.width, model.head_kind) == (0.5, "conv_pool_wide")  # docs/artifacts.md
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


def binomial_tolerance(p: float, n: int) -> float:
    """Z standard errors of an accuracy p measured on n images."""
    return Z * math.sqrt(p * (1 - p) / n)


def test_tolerance_is_bonferroni_z_times_the_binomial_error():
    assert Z == pytest.approx(3.776, abs=1e-3)
    # exit 17's former hard-coded tolerance, 3 x 0.0212 = 0.064 at p = 0.657, n = 500, is now
    assert binomial_tolerance(0.657, 500) == pytest.approx(3.776 * 0.021227, rel=1e-3)
    assert binomial_tolerance(0.5, 2000) == pytest.approx(binomial_tolerance(0.5, 500) / 2)


@pytest.mark.slow
def test_every_exit_accuracy_on_a_fixed_test_slice_matches_the_manifest(real_pack):
    data = real_pack
    idx = class_balanced_slice(data.test_y, PER_CLASS)
    assert len(idx) == 10 * PER_CLASS
    assert torch.bincount(data.test_y[idx], minlength=10).tolist() == [PER_CLASS] * 10
    model, m = load_run(RUN)
    assert model.num_exits == NUM_EXITS
    loader = TensorLoader(data.test_x[idx], data.test_y[idx], batch_size=100)
    correct = torch.zeros(NUM_EXITS, dtype=torch.int64)
    with torch.no_grad():
        for batch, (x, y) in enumerate(loader):
            logits = model(x)  # every exit's logits from one pass through the backbone
            correct += torch.stack([(out.argmax(1) == y).sum() for out in logits])
            if batch == 0:  # the all-exit pass gives the main branch's own forward at exit 17
                torch.testing.assert_close(logits[-1], model.forward_main(x))
    failures = []
    for e in range(1, NUM_EXITS + 1):
        acc = int(correct[e - 1]) / len(idx)
        expected = m["accuracies"][str(e)]
        tol = binomial_tolerance(expected, len(idx))
        if abs(acc - expected) > tol:
            failures.append(
                f"exit {e}: {acc:.3f} on the slice, manifest {expected:.4f} +- {tol:.4f}"
            )
        assert acc > 0.2, f"exit {e}: {acc:.3f}, hardly above chance (0.1)"
    assert not failures, "; ".join(failures)
