"""Exported runs: ``checkpoints/<run>/{model.safetensors, manifest.json, exit_accuracy.csv}``.

Only these files are ever committed (never Lightning ``.ckpt`` files or optimiser state). The
manifest holds the model configuration, the data source, the per-exit accuracies and the sha256
of the weights file; :func:`load_run` checks that checksum and rebuilds the model from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

# re-exported: the names multiexit used before the one implementation in grle_common
from grle_common.fileio import atomic_write, sha256_file, write_text_atomic
from multiexit.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    ChecksumError,
    ManifestError,
    OutputPathError,
)
from multiexit.model import VGG16MultiExit, build_vgg16_multiexit

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
ACCURACY_FILE = "exit_accuracy.csv"
FORMAT = "grle-multiexit/1"


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Check, without creating anything, that the folder ``path`` can be created or written.

    ``what`` names the path in the message (e.g. ``"--export"``). Called before any work, so
    a bad path costs a second, not a training run.

    Raises:
        OutputPathError: an ancestor is a file, or the nearest existing folder is not writable.
    """
    folder = Path(path).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    else:
        return folder
    raise OutputPathError(f"Cannot write {what} {path} ({problem}); choose another path.")


def model_config(model: VGG16MultiExit) -> dict[str, Any]:
    """The keyword arguments that rebuild ``model`` with :func:`build_vgg16_multiexit`."""
    return {"num_classes": model.num_classes, "width": model.width, "head": model.head_kind}


def export_run(
    model: VGG16MultiExit,
    out_dir: str | os.PathLike,
    *,
    data_source: str,
    accuracy: pd.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write weights (``dtype``), the accuracy CSV (if given) and ``manifest.json``.

    Args:
        model: the trained model.
        out_dir: ``checkpoints/<run>``; created if needed.
        data_source: where the data came from (e.g. ``"CIFAR-10 (JPEG copy) <path> sha256 ..."``).
        accuracy: per-exit table with columns ``exit, layer, accuracy, params, macs``.
        extra: more provenance for the manifest (training settings, seed, command, ...).
        dtype: floating dtype of the stored tensors (half precision keeps a run under 40 MB).

    Returns:
        The run folder. The manifest is written last, so a run with a manifest is complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
        .contiguous()
        .clone()
        for k, v in model.state_dict().items()
    }
    atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "config": model_config(model),
        "cfg": list(model.cfg),
        "exit_layers": list(model.exit_layers),
        "data_source": data_source,
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(out / WEIGHTS_FILE),
            "dtype": str(dtype).removeprefix("torch."),
            "bytes": (out / WEIGHTS_FILE).stat().st_size,
        },
        "accuracies": None,
    }
    if accuracy is not None:
        atomic_write(out / ACCURACY_FILE, lambda tmp: accuracy.to_csv(tmp, index=False))
        manifest["accuracies"] = {
            str(int(r.exit)): float(r.accuracy) for r in accuracy.itertuples(index=False)
        }
        manifest["accuracy_file"] = ACCURACY_FILE
    manifest.update(extra or {})
    text = json.dumps(manifest, indent=2) + "\n"
    write_text_atomic(out / MANIFEST_FILE, text)
    return out


def weights_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``width``, ``head`` and ``num_classes`` that a VGG-16 state dict was built with.

    Read from tensor shapes: the main classifier's linear layer (``512 * width`` inputs,
    ``num_classes`` outputs) and whether exit 1's head starts with a convolution. A value that
    cannot be read (e.g. no heads in the state) is left out.
    """
    found: dict[str, Any] = {}
    linear = state.get("classifier.2.weight")
    if linear is not None and linear.dim() == 2:
        found["num_classes"] = int(linear.shape[0])
        found["width"] = float(linear.shape[1]) / 512  # conv5_3 has 512 * width channels
    if any(k.startswith("heads.0.") for k in state):
        first = state.get("heads.0.0.0.weight")
        found["head"] = "conv_pool" if first is not None and first.dim() == 4 else "pool_linear"
    return found


def _differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """One phrase per setting (width, head, num_classes) whose values differ."""
    return [
        f"{name} {_fmt(found[name])} in the checkpoint but {_fmt(expected[name])} here"
        for name in ("width", "head", "num_classes")
        if name in found and name in expected and found[name] != expected[name]
    ]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_state_into(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    *,
    skip: tuple[str, ...] = (),
    hint: str | None = None,
) -> None:
    """``load_state_dict`` with one clear error when the tensors do not fit.

    Tensors whose names start with a prefix in ``skip`` are ignored on both sides (stage
    ``exits`` takes only the backbone from a main-stage checkpoint: ``skip=("heads.",)``).
    The error names which of width, head and num_classes differ between the checkpoint (read
    from its tensor shapes) and ``model``; ``hint`` replaces its default advice.

    Raises:
        CheckpointMismatchError: missing, unexpected or wrongly shaped tensors.
    """
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    kept = {k: v for k, v in state.items() if not k.startswith(skip)}
    missing = sorted(set(own) - set(kept))
    unexpected = sorted(set(kept) - set(own))
    wrong = sorted(k for k in set(own) & set(kept) if own[k].shape != kept[k].shape)
    if missing or unexpected or wrong:
        expected = weights_config(model.state_dict())
        found = {k: v for k, v in weights_config(state).items() if not (skip and k == "head")}
        diffs = _differences(expected, found)
        if diffs:
            detail = "; ".join(diffs)
            advice = hint or (
                "build the model with the checkpoint's settings ("
                + ", ".join(
                    f"{k}={_fmt(found[k])}" for k in ("width", "head", "num_classes") if k in found
                )
                + ") or use a checkpoint trained with this model's"
            )
        else:
            detail = "; ".join(
                f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for name, keys in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape", wrong),
                )
                if keys
            )
            advice = hint or (
                "it was not saved from a multi-exit VGG-16 of this package; use a checkpoint "
                "written by multiexit.train or multiexit.export"
            )
        raise CheckpointMismatchError(
            f"The checkpoint {source} does not fit this model ({detail}); {advice}."
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in kept.items()}, strict=not skip)


def load_run(path: str | os.PathLike) -> tuple[VGG16MultiExit, dict[str, Any]]:
    """Load an exported run: ``(model in eval mode, float32, CPU; manifest dict)``.

    This is the one loader of exported runs (``multiexit.evaluate``, ``--init-from`` and
    ``profiling.measure`` use it), so every caller shows the same messages.

    Raises:
        CheckpointNotFoundError: ``path`` is not a folder, has no ``manifest.json`` or no
            weights file (a ``FileNotFoundError``).
        ManifestError: ``manifest.json`` is not a manifest written by :func:`export_run`.
        ChecksumError: the weights file's sha256 differs from the manifest's.
        CheckpointMismatchError: the weights do not fit the manifest's model (the message names
            which of width, head and num_classes differ).
    """
    run = Path(path)
    manifest_path = run / MANIFEST_FILE
    if not run.is_dir():
        raise CheckpointNotFoundError(
            f"{run} is not a folder; pass an exported run folder such as checkpoints/<run> "
            "(written by `python -m multiexit.train --export`)."
        )
    if not manifest_path.is_file():
        raise CheckpointNotFoundError(
            f"The folder {run} has no {MANIFEST_FILE}, so it is not an exported run; pass a "
            "folder written by `python -m multiexit.train --export` (e.g. checkpoints/<run>)."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        weights = run / manifest["weights"]["file"]
        expected_sha = manifest["weights"]["sha256"]
        config = dict(manifest["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(
            f"{manifest_path} is not a manifest written by multiexit.export ({type(exc).__name__}:"
            f" {exc}); re-export the run with `python -m multiexit.train --export`."
        ) from None
    if not weights.is_file():
        raise CheckpointNotFoundError(
            f"The weights file {weights} named by {manifest_path} is missing; re-export the run."
        )
    digest = sha256_file(weights)
    if digest != expected_sha:
        raise ChecksumError(
            f"{weights} has sha256 {digest} but its manifest says "
            f"{expected_sha}; the file is corrupt or was replaced, re-export it."
        )
    model = build_vgg16_multiexit(**config)
    load_state_into(
        model,
        load_file(str(weights)),
        str(weights),
        hint=f"the weights and {manifest_path} disagree, so re-export the run",
    )
    return model.eval(), manifest
