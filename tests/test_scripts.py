"""scripts/: the recipe script's flag handling and interpreter choice (run with a fake Python
that records its arguments), and the GPU smoke script on the CPU."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "scripts" / "cpu_reference_run.sh"


def _fake_python(path: Path, log: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$0" "$*" >> "{log}"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _run_recipe(repo: Path, step: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """Run scripts/cpu_reference_run.sh inside ``repo``; returns (interpreter, arguments) calls."""
    log = repo / "calls.log"
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("PY", "PYTHON", "TRAIN_FLAGS",
                                                               "MEASURE_FLAGS", "RUN", "HEAD")}  # fmt: skip
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "cpu_reference_run.sh"), step],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [tuple(line.split("|", 1)) for line in log.read_text().splitlines()]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the script in a folder without .venv (a fresh machine)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(RECIPE, tmp_path / "scripts" / RECIPE.name)
    return tmp_path


def test_empty_flags_are_honoured_and_unset_flags_take_the_cpu_reference(repo):
    fake = str(_fake_python(repo / "bin" / "fake", repo / "calls.log"))
    env = {"PYTHON": fake, "RUN": "vgg16", "TRAIN_FLAGS": "", "HEAD": "conv_pool",
           "MEASURE_FLAGS": "--gpu 0"}  # fmt: skip
    main_stage, exits_stage = _run_recipe(repo, "train", env)
    assert main_stage[0] == exits_stage[0] == fake
    assert main_stage[1] == (
        "-m multiexit.train --stage main --run vgg16 --runs-dir runs --seed 0 --no-progress"
    )  # the multiexit defaults: no --width, no --epochs-main, no --recipe
    assert exits_stage[1] == (
        "-m multiexit.train --stage exits --run vgg16 --runs-dir runs --head conv_pool --seed 0 "
        "--no-progress --export checkpoints/vgg16"
    )
    (measure,) = _run_recipe(repo, "measure", {**env, "LATENCY_NAME": "latency_gpu0"})
    assert measure[1] == (
        "-m profiling.measure --gpu 0 --run checkpoints/vgg16 --k 5 "
        "--out checkpoints/vgg16/latency_gpu0"
    )
    main_stage, exits_stage = _run_recipe(repo, "train", {"PYTHON": fake})
    flags = "--width 0.5 --recipe fast --crop-pad 4 --epochs-main 32 --epochs-exits 5 --tta"
    assert f"--stage main --run vgg16_cpu_ref --runs-dir runs {flags} --seed 0" in main_stage[1]
    assert (
        f"--stage exits --run vgg16_cpu_ref --runs-dir runs {flags} --head conv_pool_wide "
        in (exits_stage[1])
    )
    assert exits_stage[1].endswith("--export checkpoints/vgg16_cpu_ref")
    (measure,) = _run_recipe(repo, "measure", {"PYTHON": fake})
    assert measure[1].startswith("-m profiling.measure --device cpu --threads 1 --repeats 200")


def test_interpreter_falls_back_to_python3_without_a_venv(repo):
    log = repo / "calls.log"
    bin_dir = repo / "bin"
    python3 = _fake_python(bin_dir / "python3", log)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    call, _ = _run_recipe(repo, "train", {"PATH": path})
    assert call[0] == str(python3)  # found on PATH: there is no .venv/bin/python here
    venv = _fake_python(repo / ".venv" / "bin" / "python", log)
    call, _ = _run_recipe(repo, "train", {"PATH": path})
    assert call[0] == ".venv/bin/python" and venv.is_file()
    call, _ = _run_recipe(repo, "train", {"PATH": path, "PY": str(python3)})
    assert call[0] == str(python3)  # an explicit interpreter wins


def _load_smoke():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "scripts" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_smoke_runs_on_the_cpu_and_reports_gpu_steps_as_skipped(tmp_path):
    import json
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_smoke.py"),
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--work",
            str(tmp_path / "work"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "smoke_report.json",
        "smoke_report.md",
    ]
    report = json.loads((tmp_path / "out" / "smoke_report.json").read_text())
    status = {s["step"]: s["status"] for s in report["steps"]}
    assert status == {
        "environment": "passed",
        "gpu_tests": "skipped",
        "loader": "skipped",
        "cuda_graphs": "skipped",
        "lightning": "passed",
        "throughput": "skipped",
        "real_run": "skipped",
        "measure": "skipped",
    }
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["loader"]["reason"] == "needs a CUDA GPU"
    lightning = steps["lightning"]["details"]
    assert lightning["main_exit17_accuracy"] >= 0.85 and lightning["backbone_bit_identical"]
    assert lightning["precision"] == "32-true" and lightning["batch_device"] == "cpu"
    md = (tmp_path / "out" / "smoke_report.md").read_text()
    assert "| lightning | passed |" in md and "| measure | skipped |" in md


def test_gpu_smoke_reports_a_broken_step_and_fails(tmp_path, monkeypatch):
    smoke = _load_smoke()

    def broken(ctx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(smoke, "STEPS", [("environment", smoke.step_environment, False),
                                         ("broken", broken, False),
                                         ("loader", smoke.step_loader, True),
                                         ("unlearned", lambda ctx: {"ok": False, "acc": 0.1}, False)])  # fmt: skip
    assert smoke.main([str(tmp_path / "out"), "--device", "cpu", "--work", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "out" / "smoke_report.json").read_text())
    status = [(s["step"], s["status"]) for s in report["steps"]]
    assert status == [("environment", "passed"), ("broken", "failed"), ("loader", "skipped"),
                      ("unlearned", "failed")]  # fmt: skip
    assert report["steps"][1]["error"].strip().endswith("an illegal memory access was encountered")
    assert report["steps"][3]["details"] == {"acc": 0.1}


FAKE_RUNNER = """#!/bin/sh
# fake interpreter: the inline epoch-fitting program runs on the real Python, every other
# command is recorded and leaves the files the next step reads
if [ "$1" = "-" ]; then exec {python} "$@"; fi
printf "%s\\n" "$*" >> "{log}"
case "$*" in
  scripts/gpu_smoke.py*)
    printf '{{"steps": [{{"step": "throughput", "status": "passed", "details":
      {{"projected_recipe_s": {projected}}}}}]}}' > "$2/smoke_report.json" ;;
  "-m multiexit.train"*)
    export_dir=$(echo "$*" | sed 's/.*--export \\([^ ]*\\).*/\\1/')
    mkdir -p "$export_dir" && head -c 40000000 /dev/urandom > "$export_dir/model.safetensors" ;;
esac
"""


def _run_reference(tmp_path: Path, projected: float, *steps: str, **env: str):
    import sys

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "gpu_reference_run.sh", repo / "scripts")
    log = tmp_path / "calls.log"
    fake = repo / "fake_python"
    fake.write_text(FAKE_RUNNER.format(python=sys.executable, log=log, projected=projected))
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EPOCHS_", "FULL_"))}
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "gpu_reference_run.sh"), str(out), *steps],
        env={**base, "PYTHON": str(fake), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, log.read_text().splitlines(), repo


def _train_epochs(calls: list[str]) -> tuple[int, int]:
    (train,) = [c for c in calls if c.startswith("-m multiexit.train")]
    words = train.split()
    return int(words[words.index("--epochs-main") + 1]), int(
        words[words.index("--epochs-exits") + 1]
    )


def test_reference_run_keeps_the_recipe_when_it_fits_and_bundles_the_export(tmp_path):
    out, calls, repo = _run_reference(tmp_path, 100.0)  # 1.5 x 100 s fits in 600 - 90 s
    assert calls[0].startswith(f"scripts/gpu_smoke.py {out} --work runs/gpu_reference/smoke")
    assert _train_epochs(calls) == (60, 25)
    assert "--recipe standard" in calls[1]
    assert [c.split()[:2] for c in calls[2:]] == [["-m", "multiexit.evaluate"],
                                                  ["-m", "profiling.measure"],
                                                  ["-m", "profiling.measure"]]  # fmt: skip
    assert "--cuda-graphs" in calls[4] and "--gpu 0" in calls[3]
    parts = sorted(out.glob("reference_run.tgz.part-*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 15 * 2**20 for p in parts)  # 40 MB
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(f"cat {out}/reference_run.tgz.part-* | tar -xz -C {unpacked}", shell=True,
                   check=True)  # fmt: skip
    exported = repo / "runs/gpu_reference/checkpoints/vgg16/model.safetensors"
    assert (unpacked / "vgg16/model.safetensors").read_bytes() == exported.read_bytes()
    assert "- training: 60 + 25 epochs, recipe" in (out / "reference_report.md").read_text()


def test_reference_run_reduces_epochs_to_the_time_left_and_says_so(tmp_path):
    # 1.5 x 1000 s projected against a budget of about 600 - 90 = 510 s: scale 0.34
    out, calls, _ = _run_reference(tmp_path, 1000.0, "smoke", "train")
    assert _train_epochs(calls) == (20, 8)
    assert "REDUCED" in (out / "reference_report.md").read_text()
    _, calls, _ = _run_reference(tmp_path / "b", 1000.0, "smoke", "train", FULL_RECIPE="1")
    assert _train_epochs(calls) == (60, 25)
    _, calls, _ = _run_reference(tmp_path / "c", 1000.0, "train", EPOCHS_MAIN="3",
                                 EPOCHS_EXITS="2", RECIPE="fast")  # fmt: skip
    assert "--recipe fast --epochs-main 3" in calls[0]
    assert _train_epochs(calls) == (3, 2) and not any("gpu_smoke" in c for c in calls)


def test_documented_gpu_replacement_commands_measure_on_the_gpu_and_offload_its_table(repo):
    """docs/artifacts.md, "Replacing the CPU reference run": each command of its bash block, run
    with a recording Python, gets the flags the text promises (the offload step reads the GPU
    latency folder, not the CPU one)."""
    import re
    import shlex

    text = (ROOT / "docs" / "artifacts.md").read_text()
    block = text.split("## Replacing the CPU reference run", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    commands = [c for c in commands if "cpu_reference_run.sh" in c]
    assert len(commands) == 4
    fake = str(_fake_python(repo / "bin" / "fake", repo / "calls.log"))
    calls = []
    for command in commands:
        words = shlex.split(command)
        env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
        calls += [argv for _, argv in _run_recipe(repo, words[-1], {"PYTHON": fake, **env})]
    train_main, train_exits, gpu_measure, cpu_measure, offload = calls
    assert "--epochs-main" not in train_main and "--width" not in train_main
    assert "--head conv_pool" in train_exits and "--export checkpoints/vgg16" in train_exits
    assert gpu_measure.startswith("-m profiling.measure --gpu 0 ")
    assert gpu_measure.endswith("--out checkpoints/vgg16/latency_gpu0")
    assert cpu_measure.endswith("--out checkpoints/vgg16/latency_cpu_1t")
    assert "--exits checkpoints/vgg16/latency_gpu0/candidates.csv" in offload
    assert "--out results/measured_vgg16" in offload
