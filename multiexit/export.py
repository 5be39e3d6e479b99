"""Exported runs: ``checkpoints/<run>/{model.safetensors, manifest.json, exit_accuracy.csv}``.

Only these files are ever committed (never Lightning ``.ckpt`` files or optimiser state). The
manifest holds the model configuration, the data source, the per-exit accuracies and the sha256
of the weights file; :func:`load_run` checks that checksum and rebuilds the model from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from multiexit.errors import CheckpointMismatchError, ChecksumError
from multiexit.model import VGG16MultiExit, build_vgg16_multiexit

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
ACCURACY_FILE = "exit_accuracy.csv"
FORMAT = "grle-multiexit/1"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file in ``path``'s folder, then rename it.

    Readers never see a half-written file; on error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache or export is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    atomic_write(out / MANIFEST_FILE, lambda tmp: Path(tmp).write_text(text))
    return out


def load_state_into(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    *,
    skip: tuple[str, ...] = (),
) -> None:
    """``load_state_dict`` with one clear error when the tensors do not fit.

    Tensors whose names start with a prefix in ``skip`` are ignored on both sides (stage
    ``exits`` takes only the backbone from a main-stage checkpoint: ``skip=("heads.",)``).

    Raises:
        CheckpointMismatchError: missing, unexpected or wrongly shaped tensors.
    """
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        )
        raise CheckpointMismatchError(
            f"The checkpoint {source} does not fit this model ({detail}); build the model with "
            "the width/head/num_classes it was trained with (see its manifest or hparams)."
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=not skip)


def load_run(path: str | os.PathLike) -> tuple[VGG16MultiExit, dict[str, Any]]:
    """Load an exported run: ``(model in eval mode, float32, CPU; manifest dict)``.

    Raises:
        FileNotFoundError: ``path`` has no ``manifest.json`` or weights file.
        ChecksumError: the weights file's sha256 differs from the manifest's.
        CheckpointMismatchError: the weights do not fit the configured model.
    """
    run = Path(path)
    manifest_path = run / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"No {MANIFEST_FILE} in {run}; pass a folder written by multiexit.export "
            "(e.g. checkpoints/<run>) or export one with `python -m multiexit.train --export`."
        )
    manifest = json.loads(manifest_path.read_text())
    weights = run / manifest["weights"]["file"]
    if not weights.is_file():
        raise FileNotFoundError(f"The weights file {weights} named by {manifest_path} is missing.")
    digest = sha256_file(weights)
    if digest != manifest["weights"]["sha256"]:
        raise ChecksumError(
            f"{weights} has sha256 {digest} but its manifest says "
            f"{manifest['weights']['sha256']}; the file is corrupt or was replaced, re-export it."
        )
    model = build_vgg16_multiexit(**manifest["config"])
    load_state_into(model, load_file(str(weights)), str(weights))
    return model.eval(), manifest
