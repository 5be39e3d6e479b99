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
    # five colour classes: every run measured (seeds 0-9, 1 and 2 threads) reached 1.0
    assert lightning["classes"] == 5 and lightning["backbone_bit_identical"]
    assert lightning["main_exit17_accuracy"] >= 0.6
    assert lightning["precision"] == "32-true" and lightning["batch_device"] == "cpu"
    md = (tmp_path / "out" / "smoke_report.md").read_text()
    assert "| lightning | passed |" in md and "| measure | skipped |" in md


def test_gpu_smoke_reports_a_broken_step_and_fails(tmp_path, monkeypatch):
    smoke = _load_smoke()

    def broken(ctx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(smoke, "STEPS", [smoke.Step("environment", smoke.step_environment, False, 60),
                                         smoke.Step("broken", broken, False, 60),
                                         smoke.Step("loader", smoke.step_loader, True, 60),
                                         smoke.Step("unlearned", lambda ctx: {"ok": False, "acc": 0.1}, False, 60)])  # fmt: skip
    assert smoke.main([str(tmp_path / "out"), "--device", "cpu", "--work", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "out" / "smoke_report.json").read_text())
    status = [(s["step"], s["status"]) for s in report["steps"]]
    assert status == [("environment", "passed"), ("broken", "failed"), ("loader", "skipped"),
                      ("unlearned", "failed")]  # fmt: skip
    assert report["steps"][1]["error"].strip().endswith("an illegal memory access was encountered")
    assert report["steps"][3]["details"] == {"acc": 0.1}


def test_gpu_smoke_stops_a_hung_step_and_runs_the_next(tmp_path, monkeypatch):
    import signal
    import time

    smoke = _load_smoke()
    seen = []

    def hung(ctx):  # a wait that never ends, and a step that catches every Exception
        try:
            time.sleep(60)
        except Exception:  # noqa: BLE001
            pass
        return {"ok": True}

    def after(ctx):  # the report on disk already holds the steps before this one
        seen.extend(
            s["step"] for s in json.loads((tmp_path / "out/smoke_report.json").read_text())["steps"]
        )
        return {"ok": True}

    monkeypatch.setattr(smoke, "STEPS", [smoke.Step("hung", hung, False, 0.5),
                                         smoke.Step("after", after, False, 60)])  # fmt: skip
    handler, (timer, _) = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    assert smoke.main([str(tmp_path / "out"), "--device", "cpu", "--work", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "out" / "smoke_report.json").read_text())
    assert [(s["step"], s["status"]) for s in report["steps"]] == [("hung", "failed"),
                                                                   ("after", "passed")]  # fmt: skip
    assert report["steps"][0]["error"] == "timed out after 0.5 s" and seen == ["hung"]
    assert "| hung | failed | 0.5 |" in (tmp_path / "out" / "smoke_report.md").read_text()
    # the SIGALRM handler and timer (pytest-timeout's, if any) are as they were
    assert signal.getsignal(signal.SIGALRM) is handler
    assert (signal.getitimer(signal.ITIMER_REAL)[0] > 0) == (timer > 0)


def test_smoke_time_limit_lets_an_earlier_timer_fire_and_sets_a_later_one_again():
    import signal
    import time

    smoke = _load_smoke()
    fired = []
    handler = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append("outer"))
    before = signal.setitimer(signal.ITIMER_REAL, 0.2)  # due before the block's limit
    try:
        with pytest.raises(smoke.StepTimeout, match="^timed out after 0.6 s$"):
            with smoke.time_limit(0.6):
                time.sleep(5)  # woken by the outer timer (handled, the sleep goes on), then ours
        assert fired == ["outer"]
        signal.setitimer(signal.ITIMER_REAL, 30)  # due after the block: set again afterwards
        with smoke.time_limit(0.1):
            pass
        assert 25 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30 and fired == ["outer"]
    finally:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, *before)


FAKE_RUNNER = """#!/bin/sh
# fake interpreter: the schedule program runs on the real Python, every other command is
# recorded and leaves the files the next step reads; then the command that starts with
# $FAKE_FAIL fails and the one that starts with $FAKE_HANG hangs
case "$1" in scripts/gpu_schedule.py) exec {python} "$@" ;; esac
printf "%s\\n" "$*" >> "{log}"
out=$(echo "$*" | sed -n 's/.*--out \\([^ ]*\\).*/\\1/p')
case "$*" in
  scripts/gpu_smoke.py*)
    printf '{{"steps": [{{"step": "throughput", "status": "passed", "details":
      {{"projected_recipe_s": {projected}}}}}]}}' > "$2/smoke_report.json" ;;
  "-m multiexit.train"*)
    export_dir=$(echo "$*" | sed 's/.*--export \\([^ ]*\\).*/\\1/')
    mkdir -p "$export_dir" && echo '{{}}' > "$export_dir/manifest.json"
    head -c "${{FAKE_WEIGHTS_BYTES:-1000}}" /dev/urandom > "$export_dir/model.safetensors" ;;
  "-m multiexit.evaluate"*) echo "exit,accuracy" > "$out" ;;
  "-m profiling.measure"*) mkdir -p "$out" && echo "exit,latency_ms" > "$out/exit_table.csv" ;;
esac
if [ -n "${{FAKE_FAIL:-}}" ]; then case "$*" in "$FAKE_FAIL"*) exit 1 ;; esac; fi
if [ -n "${{FAKE_HANG:-}}" ]; then case "$*" in "$FAKE_HANG"*) exec sleep 60 ;; esac; fi
"""
NO_PROJECTION = "null"  # the smoke's throughput step measured nothing


def _reference_repo(tmp_path: Path, projected: float | str) -> tuple[Path, Path, Path]:
    """A copy of the two scripts and a recording Python: (repo, fake Python, its call log)."""
    import sys

    repo = tmp_path / "repo"
    if not repo.is_dir():
        (repo / "scripts").mkdir(parents=True)
        for name in ("gpu_reference_run.sh", "gpu_schedule.py"):
            shutil.copy(ROOT / "scripts" / name, repo / "scripts")
    log = tmp_path / "calls.log"
    fake = repo / "fake_python"
    fake.write_text(FAKE_RUNNER.format(python=sys.executable, log=log, projected=projected))
    fake.chmod(0o755)
    return repo, fake, log


def _reference_env(fake: Path, env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EPOCHS_", "FULL_", "FAKE_"))}
    path = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"  # grle_common for the schedule
    return {**base, "PYTHONPATH": path, "PYTHON": str(fake), **env}


def _run_reference(
    tmp_path: Path, projected: float | str, *steps: str, rc: int = 0, out: str = "out", **env: str
):
    """Run scripts/gpu_reference_run.sh with the recording Python; returns (OUT, the commands
    it ran, the repo). ``rc``: the exit status it must end with."""
    repo, fake, log = _reference_repo(tmp_path, projected)
    log.unlink(missing_ok=True)
    out_dir = tmp_path / out
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "gpu_reference_run.sh"), str(out_dir), *steps],
        env=_reference_env(fake, env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return out_dir, log.read_text().splitlines(), repo


def _train_epochs(calls: list[str]) -> tuple[int, int]:
    (train,) = [c for c in calls if c.startswith("-m multiexit.train")]
    words = train.split()
    return int(words[words.index("--epochs-main") + 1]), int(
        words[words.index("--epochs-exits") + 1]
    )


def _unpack(out: Path, into: Path) -> Path:
    """The documented unpacking: the weight parts, then the measurement archive if any."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(f"cat {out}/reference_run.tgz.part-* | tar -xz -C {into}", shell=True,
                   check=True)  # fmt: skip
    if (out / "reference_measure.tgz").is_file():
        subprocess.run(["tar", "-xzf", str(out / "reference_measure.tgz"), "-C", str(into)],
                       check=True)  # fmt: skip
    return into


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_reference_run_keeps_the_recipe_when_it_fits_and_bundles_the_export(tmp_path):
    out, calls, repo = _run_reference(tmp_path, 100.0, FAKE_WEIGHTS_BYTES="40000000")
    assert calls[0].startswith(f"scripts/gpu_smoke.py {out} --work runs/gpu_reference/smoke")
    assert _train_epochs(calls) == (60, 25)  # 1.5 x 100 s + 85 x 1 s fits in 600 - 90 - 30 s
    assert "--recipe standard" in calls[1]
    assert [c.split()[:2] for c in calls[2:]] == [["-m", "multiexit.evaluate"],
                                                  ["-m", "profiling.measure"],
                                                  ["-m", "profiling.measure"]]  # fmt: skip
    assert "--cuda-graphs" in calls[4] and "--gpu 0" in calls[3]
    parts = sorted(out.glob("reference_run.tgz.part-*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 15 * 2**20 for p in parts)  # 40 MB
    # a device call returns at most 8 files, all named in letters, digits, '.', '_', '-'
    assert _files(out) == ["reference.log", "reference_measure.tgz", "reference_report.md",
                           *[p.name for p in parts], "smoke_report.json"]  # fmt: skip
    unpacked = _unpack(out, tmp_path / "unpacked")
    assert _files(unpacked) == ["vgg16/evaluate_test.csv", "vgg16/latency_gpu0/exit_table.csv",
                                "vgg16/latency_gpu0_graphs/exit_table.csv",
                                "vgg16/manifest.json", "vgg16/model.safetensors"]  # fmt: skip
    exported = repo / "runs/gpu_reference/checkpoints/vgg16/model.safetensors"
    assert (unpacked / "vgg16/model.safetensors").read_bytes() == exported.read_bytes()
    assert "- training: 60 + 25 epochs, recipe" in (out / "reference_report.md").read_text()
    assert (repo / "runs/gpu_reference/schedule.txt").read_text().startswith("60 25 recipe")


def test_reference_run_bundles_the_weights_before_a_measurement_fails(tmp_path):
    out, calls, repo = _run_reference(tmp_path, 100.0, rc=1, FAKE_FAIL="-m profiling.measure")
    assert [c.split()[1] for c in calls[1:]] == ["multiexit.train", "multiexit.evaluate",
                                                 "profiling.measure"]  # fmt: skip
    unpacked = _unpack(out, tmp_path / "unpacked")
    exported = repo / "runs/gpu_reference/checkpoints/vgg16/model.safetensors"
    assert (unpacked / "vgg16/model.safetensors").read_bytes() == exported.read_bytes()
    # what measure finished before the failure came back too
    assert (unpacked / "vgg16/evaluate_test.csv").read_text() == "exit,accuracy\n"


def test_reference_run_killed_during_the_measurement_leaves_the_weights_in_out(tmp_path):
    """The device call's time limit kills the whole command (SIGKILL: no trap runs)."""
    import signal
    import time

    repo, fake, log = _reference_repo(tmp_path, 100.0)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        ["bash", str(repo / "scripts" / "gpu_reference_run.sh"), str(out)],
        env=_reference_env(fake, {"FAKE_HANG": "-m multiexit.evaluate"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(600):  # until the evaluation hangs (at most 60 s)
            if log.is_file() and "-m multiexit.evaluate" in log.read_text():
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the evaluation never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    unpacked = _unpack(out, tmp_path / "unpacked")
    exported = repo / "runs/gpu_reference/checkpoints/vgg16/model.safetensors"
    assert (unpacked / "vgg16/model.safetensors").read_bytes() == exported.read_bytes()


def test_reference_run_reduces_epochs_to_the_time_left_and_says_so(tmp_path):
    # need 1.5 x 1000 s + 85 x 1 s = 1585 s; left: 611 - 90 - 30 - (a few s spent) ~ 491 s: a
    # scale of 0.31, 18.6 + 7.7 epochs (slack for up to 10 s spent)
    out, calls, _ = _run_reference(tmp_path, 1000.0, "smoke", "train", CALL_LIMIT_S="611")
    assert _train_epochs(calls) == (18, 7)
    assert "- training: 18 + 7 epochs, REDUCED" in (out / "reference_report.md").read_text()
    _, calls, _ = _run_reference(tmp_path / "b", 1000.0, "smoke", "train", FULL_RECIPE="1")
    assert _train_epochs(calls) == (60, 25)
    _, calls, _ = _run_reference(tmp_path / "c", 1000.0, "train", EPOCHS_MAIN="3",
                                 EPOCHS_EXITS="2", RECIPE="fast")  # fmt: skip
    assert "--recipe fast --epochs-main 3" in calls[0]
    assert _train_epochs(calls) == (3, 2) and not any("gpu_smoke" in c for c in calls)


def test_reference_run_keeps_a_margin_for_per_epoch_costs_and_the_measurement(tmp_path):
    # 1.5 x 270 s = 405 s of projected training fitted the old guard (600 - 90 s left); with
    # 85 x 1 s of checkpoints and validation starts and 30 s of margin it does not
    out, calls, _ = _run_reference(tmp_path, 270.0, "smoke", "train")
    main, exits = _train_epochs(calls)
    assert 50 <= main < 60 and 20 <= exits < 25
    report = (out / "reference_report.md").read_text()
    assert (
        f"- training: {main} + {exits} epochs, REDUCED (projected 270 s x 1.5 + 85 x 1 s" in report
    )


def test_reference_run_retry_continues_the_reduced_run(tmp_path):
    """The first call reduced the epochs and was cut short in training; the documented retry
    (train measure bundle, a new OUT: no smoke report) must train the same epochs, or the
    resume would clash with the saved run settings."""
    out, calls, _ = _run_reference(tmp_path, 1000.0, rc=1, CALL_LIMIT_S="611",
                                   FAKE_FAIL="-m multiexit.train")  # fmt: skip
    assert _train_epochs(calls) == (18, 7)
    assert not list(out.glob("reference_run.tgz.part-*"))  # no export: nothing to bundle
    out, calls, _ = _run_reference(tmp_path, 1000.0, "train", "measure", "bundle", out="retry")
    assert _train_epochs(calls) == (18, 7)
    report = (out / "reference_report.md").read_text()
    assert "- training: 18 + 7 epochs, continued, REDUCED (projected 1000 s" in report
    assert list(out.glob("reference_run.tgz.part-*"))


def test_reference_run_without_a_projection_trains_a_fallback_schedule(tmp_path):
    # no projection: the recipe is assumed to take 600 s, x 1.5 + 85 s = 985 s against ~480 s
    out, calls, _ = _run_reference(tmp_path, NO_PROJECTION, "smoke", "train")
    main, exits = _train_epochs(calls)
    assert 25 <= main <= 29 and 10 <= exits <= 12
    report = (out / "reference_report.md").read_text()
    assert f"- training: {main} + {exits} epochs, REDUCED (no projection, assumed 600 s" in report
    _, calls, _ = _run_reference(tmp_path / "b", NO_PROJECTION, "smoke", "train",
                                 FALLBACK_RECIPE_S="100")  # fmt: skip
    assert _train_epochs(calls) == (60, 25)


def test_reference_run_stops_a_hung_smoke_and_trains_on_its_report(tmp_path):
    out, calls, _ = _run_reference(tmp_path, 100.0, "smoke", "train", SMOKE_LIMIT_S="1",
                                   FAKE_HANG="scripts/gpu_smoke.py")  # fmt: skip
    assert _train_epochs(calls) == (60, 25)  # the projection the smoke wrote before it hung
    log = (out / "reference.log").read_text()
    assert "smoke: stopped after SMOKE_LIMIT_S=1 s; its report holds the steps it finished" in log


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALL_LIMIT_S": "ten"}, "error: CALL_LIMIT_S must be a number (got 'ten')."),
        ({"MARGIN_S": "-5"}, "error: MARGIN_S must be a number ≥ 0 (got -5.0)."),
        ({"EPOCHS_MAIN": "0"}, "error: EPOCHS_MAIN must be an integer ≥ 1 (got 0)."),
    ],
)
def test_reference_run_refuses_a_bad_time_setting_before_training(tmp_path, env, message):
    repo, fake, log = _reference_repo(tmp_path, 100.0)
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "gpu_reference_run.sh"), str(tmp_path / "out"), "train"],
        env=_reference_env(fake, env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.splitlines()[0] == message
    assert not log.exists()  # nothing ran


def test_documented_device_calls_run_retry_and_unpack(tmp_path):
    """docs/artifacts.md, "The device call": the two `run` tool calls (with a recording Python)
    carry the pack file alone, fit the session's 15 minutes with the machine's start, and the
    retry after a call stopped in training continues its epochs; the documented unpacking
    gives the run folder."""
    text = (ROOT / "docs" / "artifacts.md").read_text()
    section = text.split("### The device call", 1)[1].split("### ", 1)[0]
    first, retry = (json.loads(b.split("```", 1)[0]) for b in section.split("```json\n")[1:])
    assert first["carry"] == retry["carry"] == ["data/cifar10_jpeg.npz"]
    assert 120 + first["timeout_s"] + retry["timeout_s"] <= 900  # a start of up to 2 min
    limit = int(first["command"].split("CALL_LIMIT_S=", 1)[1].split()[0])
    assert limit < first["timeout_s"]
    repo, fake, log = _reference_repo(tmp_path, 1000.0)  # a slow machine: REDUCED

    def call(command: str, out: str, **env: str) -> Path:
        proc = subprocess.run(["bash", "-c", command], cwd=repo, capture_output=True, text=True,
                              env=_reference_env(fake, {"OUT": str(tmp_path / out), **env}),
                              timeout=120)  # fmt: skip
        assert proc.returncode == int("FAKE_FAIL" in env), proc.stdout + proc.stderr
        return tmp_path / out

    call(first["command"], "first", FAKE_FAIL="-m multiexit.train")  # stopped in training
    first_epochs = _train_epochs(log.read_text().splitlines())
    log.unlink()
    out = call(retry["command"], "retry")
    assert _train_epochs(log.read_text().splitlines()) == first_epochs != (60, 25)
    block = section.split("```bash\n")[2].split("```", 1)[0]
    (repo / "checkpoints").mkdir()
    subprocess.run(["bash", "-c", "\n".join(line for line in block.splitlines()
                                            if not line.startswith("F="))],
                   cwd=repo, env={**os.environ, "F": str(out)}, check=True)  # fmt: skip
    assert _files(repo / "checkpoints") == ["vgg16/evaluate_test.csv",
                                            "vgg16/latency_gpu0/exit_table.csv",
                                            "vgg16/latency_gpu0_graphs/exit_table.csv",
                                            "vgg16/manifest.json", "vgg16/model.safetensors",
                                            "vgg16/reference_report.md"]  # fmt: skip


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
