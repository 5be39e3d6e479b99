#!/usr/bin/env python3
"""GPU smoke run: every GPU path of the toolkit once, in a few minutes, with a report.

    python3 scripts/gpu_smoke.py OUT [--work DIR] [--pack PATH] [--device auto|cpu]

Installs nothing; run from anywhere with a Python that has torch, pytorch-lightning,
safetensors, pandas, matplotlib and pytest (the repository is put on ``sys.path``). Writes
``OUT/smoke_report.md`` and ``OUT/smoke_report.json`` (two files: a device machine returns few)
and keeps bulky outputs (Lightning runs, the exported run, latency tables) in ``--work``
(default ``runs/gpu_smoke``, git-ignored). Steps, each passed / failed / skipped with its
numbers (docs/artifacts.md, "GPU smoke and reference run"):

1. environment: versions, the GPU, NVML's reading of the same GPU (names must match);
2. ``tests/profiling/test_gpu.py``;
3. loader: GPU-resident batches (shuffle, crop, flip, normalise, channels-last) equal the CPU's;
4. CUDA graphs: replay equals eager output (fp32, fp16) for exits 1, 9, 17 and is not slower;
5. Lightning on one GPU: channels-last, bf16/fp16 mixed, stage main learns a synthetic set,
   the backbone is bit-identical after stage exits;
6. throughput: full-width training images/s per stage, and the projected 60 + 25 epochs;
7. a short real run on the pack through the CLI (1 + 1 epochs, export);
8. ``profiling.measure --gpu 0`` on that export: eager, CUDA graphs, and batch 64 (exit 17
   must be slower than exit 1).

On a machine without CUDA (or ``--device cpu``) steps 1 and 5 run at tiny size on the CPU and
the GPU-only steps are reported as skipped; the test suite runs it that way. Every step has a
time limit (:data:`STEPS`): a step that outlasts it is stopped and reported as failed ("timed
out after N s"), and the next step runs. The report is rewritten after every step, so a smoke
killed from outside still leaves the steps it finished. Exit status 0 when no step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from grle_common.cli import run_cli  # noqa: E402
from profiling.fileio import write_files_atomically  # noqa: E402

EPOCH_IMAGES, VAL_IMAGES, RECIPE_EPOCHS = 45_000, 5_000, (60, 25)  # the paper recipe
PALETTE = torch.tensor(
    [[220, 40, 40], [40, 220, 40], [40, 40, 220], [220, 220, 40], [220, 40, 220],
     [40, 220, 220], [220, 220, 220], [40, 40, 40], [220, 130, 40], [130, 40, 220]],
    dtype=torch.float32,
).view(10, 3, 1, 1)  # fmt: skip


LEARNED = 0.6  # exit 17's test accuracy after stage main that counts as learned (chance <= 0.2)


class Skip(Exception):
    """A step that cannot run here; the message says why."""


class StepTimeout(BaseException):
    """Raised into a step that outlasts its limit (a BaseException: the step's own ``except
    Exception`` does not swallow it)."""


def synthetic(n_train: int, n_test: int, seed: int = 0, classes: int = 10):
    """``classes`` colour classes (the first of :data:`PALETTE`) plus noise, as
    :class:`CifarArrays`; labels run 0 .. classes - 1 (the model keeps its ten outputs)."""
    from multiexit.data import CifarArrays

    g = torch.Generator().manual_seed(seed)

    def make(n: int):
        y = torch.arange(n) % classes
        return (PALETTE[y] + torch.randn(n, 3, 32, 32, generator=g) * 12).clamp(0, 255).to(
            torch.uint8
        ), y

    return CifarArrays(*make(n_train), *make(n_test), "synthetic (smoke)")


def _subprocess(argv: list[str], timeout: float) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s", time.perf_counter() - start
    return proc.returncode, (proc.stdout + proc.stderr)[-2000:], time.perf_counter() - start


# -- the steps: each returns a dict of details with "ok"; raising Skip skips it ---------------


def step_environment(ctx: dict) -> dict:
    from profiling import metadata as meta

    info: dict[str, Any] = {"software": meta.software_metadata(), "cuda_available": ctx["gpu"]}
    if not ctx["gpu"]:
        info["cpu"] = meta.cpu_model()
        return {"ok": True, **info}
    info["device"] = meta.cuda_metadata(0)
    nvml = meta.nvml_snapshot(0)
    info["nvml"] = nvml
    info["nvml_matches_torch"] = nvml.get("name") == info["device"]["name"] if nvml[
        "available"
    ] else None  # fmt: skip
    return {"ok": info["nvml_matches_torch"] is not False, **info}


def step_gpu_tests(ctx: dict) -> dict:
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "tests/profiling/test_gpu.py"]  # fmt: skip
    rc, out, seconds = _subprocess(argv, 240)
    summary = [line for line in out.splitlines() if " passed" in line or " failed" in line]
    return {"ok": rc == 0, "returncode": rc, "summary": summary[-1:], "output_tail": out[-800:]}


def step_loader(ctx: dict) -> dict:
    from multiexit.data import TensorLoader

    data = synthetic(1000, 0, seed=1)
    kw = dict(batch_size=256, shuffle=True, augment=True, seed=3, epoch_fn=lambda: 1)
    cpu = list(TensorLoader(data.train_x, data.train_y, **kw))
    gpu = list(TensorLoader(data.train_x.cuda(), data.train_y.cuda(), channels_last=True, **kw))
    equal = [torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())
             for a, b in zip(cpu, gpu, strict=True)]  # fmt: skip
    layout = all(b[0].is_contiguous(memory_format=torch.channels_last) for b in gpu)
    return {"ok": all(equal) and layout, "batches": len(gpu), "equal": sum(equal),
            "channels_last": layout}  # fmt: skip


def step_cuda_graphs(ctx: dict) -> dict:
    from multiexit.model import build_vgg16_multiexit
    from profiling.timing import CudaEventTimer, capture_cuda_graph, time_callable

    torch.backends.cudnn.benchmark = False  # same kernels for eager and capture
    torch.manual_seed(0)
    rows, ok = [], True
    for name, dtype, tol in (("fp32", torch.float32, 1e-4), ("fp16", torch.float16, 1e-2)):
        model = build_vgg16_multiexit().to("cuda", dtype).eval()
        x = torch.randn(1, 3, 32, 32, device="cuda", dtype=dtype)
        with torch.no_grad():
            for i in (1, 9, 17):
                module = model.exit_module(i).eval()
                eager = module(x).clone()
                held: dict[str, torch.Tensor] = {}

                def write(module=module, held=held, x=x) -> None:
                    held["y"] = module(x)

                replay = capture_cuda_graph(write, "cuda:0", warmup=3)
                replay()
                torch.cuda.synchronize()
                diff = float((held["y"].float() - eager.float()).abs().max())
                scale = float(eager.float().abs().max()) or 1.0
                t = {}
                for mode, fn in (("eager", lambda m=module, x=x: m(x)), ("graph", replay)):
                    stats = time_callable(fn, timer=CudaEventTimer("cuda:0"), warmup=20,
                                          repeats=200)  # fmt: skip
                    t[mode] = round(stats.median_ms, 4)
                same = diff <= tol * scale
                faster = t["graph"] <= t["eager"] * 1.05  # 5 %: timing noise
                ok = ok and same and faster
                rows.append({"dtype": name, "exit": i, "max_abs_diff": diff, "eager_ms": t["eager"],
                             "graph_ms": t["graph"], "equal": same, "not_slower": faster})  # fmt: skip
    return {"ok": ok, "exits": rows}


class Probe(pl.Callback):
    """What the first training batch and the first conv layer actually saw."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self._handle = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.seen:
            return
        x = batch[0]
        conv = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d))
        self.seen.update(
            batch_device=str(x.device),
            batch_channels_last=x.is_contiguous(memory_format=torch.channels_last),
            weights_channels_last=conv.weight.is_contiguous(memory_format=torch.channels_last),
            precision=str(trainer.precision),
        )
        self._handle = conv.register_forward_hook(self._record_dtype)

    def _record_dtype(self, module, inputs, output) -> None:  # returns None: output unchanged
        self.seen.setdefault("conv_output_dtype", str(output.dtype))
        self._handle.remove()


def step_lightning(ctx: dict) -> dict:
    """Stage main must learn the synthetic set (exit 17 >= :data:`LEARNED`), stage exits must
    leave the backbone bit for bit. The CPU size has five classes: with ten, its 60 optimiser
    steps ended anywhere from 0.62 to 1.00 depending on the seed and the thread count; with
    five every run measured ended at 1.00 (docs/artifacts.md, "The smoke")."""
    from multiexit.train import TrainConfig, run_stage

    gpu = ctx["gpu"]
    n_train, width, batch, epochs, classes = (
        (2200, 0.25, 128, 4, 10) if gpu else (320, 0.125, 32, 6, 5)
    )
    cfg = TrainConfig(run="smoke_synthetic", runs_dir=str(ctx["work"] / "runs"), width=width,
                      batch_size=batch, val_size=200 if gpu else 20, epochs_main=epochs,
                      epochs_exits=2 if gpu else 1, accelerator="gpu" if gpu else "cpu",
                      devices="1", progress=False, resume=False, lr_main=0.05, lr_exits=0.01)  # fmt: skip
    data = synthetic(n_train, 500 if gpu else 100, classes=classes)
    probe = Probe()
    _, _, acc_main = run_stage(cfg, "main", arrays=data, callbacks=[probe])
    best = Path(cfg.runs_dir) / cfg.run / "main" / "checkpoints" / "best.ckpt"
    before = {k: v for k, v in torch.load(best, map_location="cpu", weights_only=False)[
        "state_dict"].items() if not k.startswith("model.heads.")}  # fmt: skip
    exits, _, acc = run_stage(cfg, "exits", arrays=data)
    after = exits.state_dict()
    identical = all(torch.equal(after[k].cpu(), v) for k, v in before.items())
    seen = probe.seen
    ok = acc_main[16] >= LEARNED and identical and bool(before)
    if gpu:
        ok = ok and seen["batch_channels_last"] and seen["weights_channels_last"]
        ok = ok and seen["conv_output_dtype"] in ("torch.bfloat16", "torch.float16")
    return {"ok": ok, "classes": classes, "main_exit17_accuracy": acc_main[16],
            "exits_accuracy": acc[:16], "backbone_bit_identical": identical, **seen}  # fmt: skip


def _pack_arrays(ctx: dict):
    from multiexit.data import load_cifar10

    try:
        return load_cifar10(source="pack", pack_path=ctx["pack"])
    except FileNotFoundError as exc:
        raise Skip(f"no CIFAR-10 pack ({exc})") from None


def step_throughput(ctx: dict) -> dict:
    """Full-width training images/s of both stages (bf16 autocast, channels-last, batch 256,
    GPU-resident loader; no Lightning) and the projected time of the 60 + 25 epoch recipe."""
    from multiexit.data import TensorLoader
    from multiexit.model import build_vgg16_multiexit

    data = _pack_arrays(ctx)
    model = build_vgg16_multiexit().cuda().to(memory_format=torch.channels_last)
    loader = TensorLoader(data.train_x[:12800].cuda(), data.train_y[:12800].cuda(),
                          batch_size=256, shuffle=True, augment=True, channels_last=True)  # fmt: skip
    loss_fn = torch.nn.CrossEntropyLoss()
    torch.backends.cudnn.benchmark = True
    out: dict[str, Any] = {}
    for stage in ("main", "exits"):
        params = model.parameters() if stage == "main" else model.heads.parameters()
        opt = (torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True) if stage == "main"
               else torch.optim.Adam(params, lr=1e-3))  # fmt: skip
        batches = list(loader)
        for k, (x, y) in enumerate(batches):
            if k == 10:
                torch.cuda.synchronize()
                start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                if stage == "main":
                    loss = loss_fn(model.forward_main(x), y)
                else:
                    with torch.no_grad():
                        maps = model.forward_features(x)[:-1]
                    loss = sum(loss_fn(h(m), y) for h, m in zip(model.heads, maps, strict=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        per_step_s = (time.perf_counter() - start) / (len(batches) - 10)
        out[f"{stage}_images_per_s"] = round(256 / per_step_s, 1)
    eval_ips = out["main_images_per_s"] * 2  # forward only: about a third of a training step
    seconds = sum(e * (EPOCH_IMAGES / out[f"{s}_images_per_s"] + VAL_IMAGES / eval_ips)
                  for s, e in zip(("main", "exits"), RECIPE_EPOCHS, strict=True))  # fmt: skip
    out["projected_recipe_s"] = round(seconds, 1)
    out["projection"] = ("60 x 45,000 + 25 x 45,000 training images at these rates, plus "
                         "validation; Lightning's per-step overhead not included")  # fmt: skip
    return {"ok": True, **out}


def step_real_run(ctx: dict) -> dict:
    _pack_arrays(ctx)  # skips without the pack; decodes it once into the cache
    export = ctx["work"] / "export"
    argv = [sys.executable, "-m", "multiexit.train", "--stage", "all", "--run", "smoke_real",
            "--runs-dir", str(ctx["work"] / "runs"), "--epochs-main", "1", "--epochs-exits", "1",
            "--devices", "1", "--no-resume", "--no-progress", "--export", str(export)]  # fmt: skip
    if ctx["pack"]:
        argv += ["--pack", str(ctx["pack"])]
    rc, out, seconds = _subprocess(argv, 420)
    details: dict[str, Any] = {"returncode": rc, "seconds": round(seconds, 1)}
    if rc == 0:
        from multiexit.export import load_run

        _, manifest = load_run(export)
        details["accuracy_exit1_exit17"] = [manifest["accuracies"]["1"],
                                            manifest["accuracies"]["17"]]  # fmt: skip
        details["precision"] = manifest["training"]["precision"]
    else:
        details["output_tail"] = out
    return {"ok": rc == 0, **details}


def step_measure(ctx: dict) -> dict:
    import pandas as pd

    export = ctx["work"] / "export"
    if not (export / "manifest.json").is_file():
        raise Skip("no exported run (step real_run did not pass)")
    rows, ok = {}, True
    for name, extra in (("eager", []), ("graphs", ["--cuda-graphs"]),
                        ("batch64", ["--batch-size", "64"])):  # fmt: skip
        out = ctx["work"] / f"latency_{name}"
        argv = [sys.executable, "-m", "profiling.measure", "--gpu", "0", "--run", str(export),
                "--repeats", "200", "--warmup", "20", "--quiet", "--out", str(out), *extra]  # fmt: skip
        rc, text, seconds = _subprocess(argv, 240)
        if rc != 0:
            rows[name] = {"returncode": rc, "output_tail": text}
            ok = False
            continue
        table = pd.read_csv(out / "exit_table.csv")
        (column,) = [c for c in table.columns if c.startswith("latency_ms:")]
        lat = table[column].tolist()
        rows[name] = {"exit1_ms": lat[0], "exit17_ms": lat[-1], "seconds": round(seconds, 1)}
        if name == "batch64":
            ok = ok and lat[-1] > lat[0]
    return {"ok": ok, **rows}


class Step(NamedTuple):
    name: str
    fn: Callable[[dict], dict]
    needs_gpu: bool
    timeout_s: float  # stopped and failed after this long (a few times its expected time)


STEPS: list[Step] = [
    Step("environment", step_environment, False, 60),
    Step("gpu_tests", step_gpu_tests, True, 300),
    Step("loader", step_loader, True, 60),
    Step("cuda_graphs", step_cuda_graphs, True, 180),
    Step("lightning", step_lightning, False, 180),
    Step("throughput", step_throughput, True, 180),
    Step("real_run", step_real_run, True, 480),
    Step("measure", step_measure, True, 300),
]


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`StepTimeout` in the block after ``seconds``: a SIGALRM timer, which
    interrupts Python code, sleeps and waits, not a C call that never returns (the caller of
    the whole smoke, scripts/gpu_reference_run.sh, runs it under ``timeout`` too). A timer
    already set (pytest-timeout's, say) still fires when it is due, and is set again after."""
    start = time.monotonic()
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    outer_pending = outer_delay > 0  # not yet fired
    outer_first = outer_pending and outer_delay < seconds

    def left(total: float) -> float:
        return max(total - (time.monotonic() - start), 1e-3)

    def expired(signum, frame):
        nonlocal outer_first, outer_pending
        if not outer_first:
            raise StepTimeout(f"timed out after {seconds:g} s")
        outer_first = outer_pending = False  # the outer timer's turn; this block's comes later
        signal.setitimer(signal.ITIMER_REAL, left(seconds))
        if callable(outer_handler):
            outer_handler(signum, frame)

    outer_handler = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, outer_delay if outer_first else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_pending:
            signal.setitimer(signal.ITIMER_REAL, left(outer_delay), outer_interval)


def run_steps(ctx: dict, done: Callable[[list[dict]], None] = lambda steps: None) -> list[dict]:
    """Run :data:`STEPS` in order, each under its time limit; ``done`` gets the results so far
    after every step."""
    results = []
    for name, fn, needs_gpu, timeout_s in STEPS:
        start = time.perf_counter()
        entry: dict[str, Any] = {"step": name}
        try:
            if needs_gpu and not ctx["gpu"]:
                raise Skip("needs a CUDA GPU")
            with time_limit(timeout_s):
                details = fn(ctx)
            entry["status"] = "passed" if details.pop("ok") else "failed"
            entry["details"] = details
        except Skip as exc:
            entry.update(status="skipped", reason=str(exc))
        except StepTimeout as exc:
            entry.update(status="failed", error=str(exc))
        except Exception:  # noqa: BLE001 - a broken step is reported, the others still run
            entry.update(status="failed", error=traceback.format_exc()[-1500:])
        entry["seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {entry['status']} ({entry['seconds']} s)", flush=True)
        results.append(entry)
        done(results)
    return results


def markdown(report: dict) -> str:
    lines = [f"# GPU smoke report ({report['created_utc']})", "",
             f"Command: `{report['command']}`; device: {report['device']}; "
             f"total {report['seconds']} s.", "", "| step | status | seconds | details |",
             "| --- | --- | ---: | --- |"]  # fmt: skip
    for e in report["steps"]:
        what = e.get("reason") or e.get("error", "").strip().splitlines()[-1:] or e.get("details")
        text = json.dumps(what, default=str)
        lines.append(f"| {e['step']} | {e['status']} | {e['seconds']} | "
                     f"{text[:600].replace('|', '/')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="folder for smoke_report.md and smoke_report.json")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu_smoke",
                   help="folder for runs, the exported run and latency tables")  # fmt: skip
    p.add_argument("--pack", type=Path, default=None,
                   help="cifar10_jpeg.npz (default: $GRLE_CIFAR_PACK, data/cifar10_jpeg.npz, "
                   "../shared/data/cifar10_jpeg.npz)")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cpu"], default="auto")
    args = p.parse_args(argv)
    gpu = args.device == "auto" and torch.cuda.is_available()
    args.work.mkdir(parents=True, exist_ok=True)
    carried = ROOT / "data" / "cifar10_jpeg.npz"  # where a device call carries the pack
    if args.pack is None and not os.environ.get("GRLE_CIFAR_PACK") and carried.is_file():
        args.pack = carried
    ctx = {"gpu": gpu, "work": args.work.resolve(), "pack": args.pack}
    start = time.perf_counter()
    command = " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])

    def write_report(steps: list[dict]) -> None:
        report = {
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": command,
            "device": torch.cuda.get_device_name(0) if gpu else "cpu (GPU-only steps skipped)",
            "seconds": round(time.perf_counter() - start, 1),
            "steps": steps,
        }
        text = json.dumps(report, indent=1, default=str)
        write_files_atomically({
            args.out / "smoke_report.json": lambda tmp: tmp.write_text(text),
            args.out / "smoke_report.md": lambda tmp: tmp.write_text(markdown(report)),
        })  # fmt: skip

    steps = run_steps(ctx, done=write_report)
    failed = [e["step"] for e in steps if e["status"] == "failed"]
    print(f"wrote {args.out}/smoke_report.md; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
