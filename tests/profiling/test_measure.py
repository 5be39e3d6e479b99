"""Measuring a tiny-width multi-exit VGG-16 end to end on the CPU, and the clear errors."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

import multiexit.export as multiexit_export
import multiexit.model as multiexit_model
import multiexit.train as multiexit_train
from multiexit.errors import CheckpointMismatchError
from profiling import measure, metadata
from profiling.candidates import select_candidates
from profiling.errors import ProfilingError, run_cli
from profiling.fileio import sha256_file
from profiling.measure import MeasureConfig, Target, resolve_targets, time_exits
from profiling.table import read_exit_table
from profiling.timing import HostClockTimer

ROOT = Path(__file__).resolve().parents[2]
TIMING = ["--repeats", "3", "--warmup", "1", "--quiet"]
TINY = ["--width", "0.0625", *TIMING]  # an untrained tiny-width model
# accuracies of a pretend-trained run: exits 1, 3, 4, 7, 17 on the Pareto front
ACC = [0.80, 0.79, 0.85, 0.885, 0.88, 0.875, 0.905, 0.90, 0.895, 0.90, 0.90, 0.905, 0.90,
       0.90, 0.905, 0.90, 0.935]  # fmt: skip
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def tiny_model():
    torch.manual_seed(0)
    return multiexit_model.build_vgg16_multiexit(num_classes=10, width=0.0625)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    model = tiny_model()
    accuracy = pd.DataFrame({"exit": range(1, 18), "layer": model.exit_layers, "accuracy": ACC})
    run = tmp_path_factory.mktemp("runs") / "tiny"
    multiexit_export.export_run(
        model, run, data_source="test: untrained weights", accuracy=accuracy
    )
    return run


class StepClock:
    """Advances 0.25 ms every time it is read: every timed call lasts exactly 0.25 ms."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25e-3
        return self.now


@pytest.mark.parametrize("interleave", [False, True])
def test_time_exits_runs_each_exit_module_the_right_number_of_times(interleave):
    model = tiny_model()
    calls = [0] * 17
    for i in range(1, 18):
        model.head_of(i).register_forward_hook(
            lambda *_, i=i: calls.__setitem__(i - 1, calls[i - 1] + 1)
        )
    config = MeasureConfig(warmup=2, repeats=4, batch_size=2, interleave=interleave)
    timer = HostClockTimer(clock=StepClock())
    stats, mode = time_exits(
        model, Target(device=torch.device("cpu"), device_id="cpu_1t"), config, timer=timer
    )
    assert mode == "host_clock"
    assert calls == [6] * 17  # warm-up + repeats, and each call reaches exactly head i
    assert [s.count for s in stats] == [4] * 17
    assert all(s.median_ms == pytest.approx(0.25) and s.std_ms < 1e-9 for s in stats)


def test_cpu_untrained_table_is_complete(tmp_path):
    out = tmp_path / "untrained"
    assert (
        measure.main(["--device", "cpu", "--threads", "1", "--untrained", *TINY, "--out", str(out)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["exit_table.csv", "exit_table.json"]
    table = read_exit_table(out / "exit_table.csv", require_sidecar=True)
    assert table.exits.tolist() == list(range(1, 18))
    assert table.layers[:3] == ["conv1_1", "conv1_2", "pool1"] and table.layers[-1] == "conv5_3"
    assert not table.has_accuracy and table.devices == ["cpu_1t"]
    meta = table.metadata
    assert meta["source"] == "measured" and meta["model"]["untrained"] is True
    assert meta["measurement"]["repeats"] == 3 and meta["measurement"]["dtype"] == "fp32"
    assert meta["software"]["torch"] == torch.__version__
    device = meta["devices"]["cpu_1t"]
    assert device["timing_mode"] == "host_clock" and device["torch_num_threads"] == 1
    stats = device["latency_stats_ms"]
    assert [s["exit"] for s in stats] == list(range(1, 18)) and {s["count"] for s in stats} == {3}
    medians = [round(s["median_ms"], 4) for s in stats]
    assert table.latency_ms("cpu_1t").tolist() == pytest.approx(medians, abs=1.1e-4)


def test_trained_run_gives_accuracy_candidates_and_figure(tmp_path, tiny_run):
    out = tmp_path / "trained"
    args = ["--device", "cpu", "--run", str(tiny_run), "--cpu-clock", "process", "--interleave"]
    assert measure.main([*args, *TIMING, "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "candidates.csv",
        "candidates.json",
        "exit_table.csv",
        "exit_table.json",
        "exits.png",
    ]
    table = read_exit_table(out / "exit_table.csv", require_sidecar=True)
    assert table.accuracy.tolist() == ACC
    assert table.metadata["checkpoint_sha256"] == sha256_file(tiny_run / "model.safetensors")
    assert table.metadata["devices"]["cpu_1t"]["timing_mode"] == "process_cpu_time"
    assert table.metadata["measurement"]["order"].startswith("round-robin")
    candidates = read_exit_table(out / "candidates.csv", require_sidecar=True)
    # the measured latencies decide the front; the written candidates are the selection's
    selection = select_candidates(table, k=5)
    assert candidates.exits.tolist() == list(selection.exits)
    assert 17 in selection.exits and 2 <= len(selection.exits) <= 5
    assert candidates.frame.equals(table.subset(selection.exits).frame)
    assert candidates.metadata["candidates"]["exits"] == candidates.exits.tolist()
    assert (out / "exits.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_that_does_not_load_gives_multiexits_message(tmp_path, tiny_run, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("manifest.json", "model.safetensors"):
        (broken / name).write_bytes((tiny_run / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    out = tmp_path / "out"
    argv = ["--device", "cpu", *TIMING, "--out", str(out), "--run"]
    cases = {
        broken: "is corrupt or was replaced, re-export it.",
        tmp_path: "has no manifest.json, so it is not an exported run",
    }
    for run, phrase in cases.items():
        with pytest.raises((OSError, ValueError)) as direct:
            multiexit_export.load_run(run)
        assert phrase in str(direct.value)
        assert run_cli(measure.main, [*argv, str(run)]) == 2
        # exactly multiexit's sentence: one message, one suggestion
        assert capsys.readouterr().err == f"error: {direct.value}\n"
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    manifest["config"]["head"] = "pool_linear"  # the weights have conv_pool heads
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes((tiny_run / "model.safetensors").read_bytes())
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointMismatchError) as direct:
        multiexit_export.load_run(other)
    assert "(head conv_pool in the checkpoint but pool_linear here)" in str(direct.value)
    assert run_cli(measure.main, [*argv, str(other)]) == 2
    assert capsys.readouterr().err == f"error: {direct.value}\n"
    assert not out.exists()


def test_a_measurement_that_fails_leaves_no_empty_folder(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(measure, "measure_model", interrupted)
    out = tmp_path / "new" / "latency"
    with pytest.raises(KeyboardInterrupt):
        measure.main(["--device", "cpu", "--untrained", *TINY, "--out", str(out)])
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its new parent


def test_unwritable_output_is_one_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = run_cli(
        measure.main, ["--device", "cpu", "--untrained", *TINY, "--out", str(blocker / "o")]
    )
    assert rc == 2
    assert "cannot write to" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [blocker]


@no_cuda
def test_gpu_without_cuda_suggests_the_cpu():
    result = subprocess.run(
        [sys.executable, "-m", "profiling.measure", "--gpu", "0", "--untrained"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: --gpu needs CUDA") and result.stderr.count("\n") == 1
    assert "use --device cpu" in result.stderr


def fake_cuda(monkeypatch, names):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: names[i])


def test_gpu_that_does_not_exist_lists_the_devices(monkeypatch):
    fake_cuda(monkeypatch, ["NVIDIA H100 80GB HBM3"])
    with pytest.raises(ProfilingError) as info:
        resolve_targets(gpus=["3"], cpu_threads=None)
    assert str(info.value) == (
        "GPU 3 does not exist; this machine has 1 CUDA device: 0 (NVIDIA H100 80GB HBM3)."
    )
    with pytest.raises(ProfilingError, match="either --gpu all or a list"):
        resolve_targets(gpus=["all", "0"], cpu_threads=None)
    (target,) = resolve_targets(gpus=["all"], cpu_threads=None)
    assert target.device == torch.device("cuda", 0) and target.device_id == "NVIDIA_H100_80GB_HBM3"


def test_identical_gpus_get_distinct_columns(monkeypatch):
    fake_cuda(monkeypatch, ["GPU X", "GPU X", "GPU Y"])
    ids = [t.device_id for t in resolve_targets(gpus=["0", "1"], cpu_threads=None)]
    assert ids == ["GPU_X_cuda0", "GPU_X_cuda1"]
    assert [t.device_id for t in resolve_targets(gpus=["2"], cpu_threads=None)] == ["GPU_Y"]
    assert resolve_targets(gpus=None, cpu_threads=4)[0].device_id == "cpu_4t"


def test_nvml_unavailable_is_recorded_not_raised(monkeypatch):
    broken = types.ModuleType("pynvml")

    def fail():
        raise RuntimeError("NVML Shared Library Not Found")

    broken.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    snap = metadata.nvml_snapshot(0)
    assert snap == {"available": False, "reason": "NVML unavailable: NVML Shared Library Not Found"}


def test_nvml_fields_are_read_from_the_matching_gpu(monkeypatch):
    fake = types.ModuleType("pynvml")
    fake.NVML_CLOCK_SM, fake.NVML_CLOCK_MEM, fake.NVML_TEMPERATURE_GPU = 1, 2, 0
    fake.nvmlInit = fake.nvmlShutdown = lambda: None
    fake.nvmlDeviceGetHandleByUUID = lambda uuid: {"GPU-abc": "h"}[uuid]
    fake.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12040
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    fake.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    fake.nvmlDeviceGetUUID = lambda h: "GPU-abc"
    fake.nvmlDeviceGetClockInfo = lambda h, kind: {1: 1980, 2: 2619}[kind]
    fake.nvmlDeviceGetMaxClockInfo = lambda h, kind: 1980
    fake.nvmlDeviceGetTemperature = lambda h, kind: 41
    fake.nvmlDeviceGetPowerUsage = lambda h: 71500
    fake.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700000
    fake.nvmlDeviceIsMigDeviceHandle = lambda h: 0  # a whole GPU, MIG mode off
    fake.nvmlDeviceGetMigMode = lambda h: (0, 0)

    def no_pstate(h):
        raise RuntimeError("Not Supported")

    fake.nvmlDeviceGetPerformanceState = no_pstate
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    props = types.SimpleNamespace(uuid="abc")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    snap = metadata.nvml_snapshot(0)
    assert snap == {
        "available": True,
        "matched_by": "uuid",
        "mig": False,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-abc",
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "max_sm_clock_mhz": 1980,
        "temperature_c": 41,
        "power_w": 71.5,
        "power_limit_w": 700.0,
        "pstate": None,
    }
    json.dumps(snap)  # JSON-ready


def test_bad_settings_are_refused(capsys):
    with pytest.raises(ProfilingError, match="--dtype"):
        MeasureConfig(dtype="int8")
    with pytest.raises(ProfilingError, match="--batch-size"):
        MeasureConfig(batch_size=0)
    assert run_cli(measure.main, ["--device", "cpu", "--untrained", "--cuda-graphs"]) == 2
    assert "--cuda-graphs needs --gpu" in capsys.readouterr().err
    for flag, value, message in [
        ("--threads", "0", "argument --threads: must be an integer ≥ 1 (got 0)"),
        ("--k", "0", "argument --k: must be an integer ≥ 1 and ≤ 17 (got 0)"),
        ("--k", "99", "argument --k: must be an integer ≥ 1 and ≤ 17 (got 99)"),
        ("--width", "0", "argument --width: must be a number > 0 (got 0)"),
        ("--repeats", "0", "argument --repeats: must be an integer ≥ 1 (got 0)"),
        ("--warmup", "-1", "argument --warmup: must be an integer ≥ 0 (got -1)"),
        ("--batch-size", "0", "argument --batch-size: must be an integer ≥ 1 (got 0)"),
    ]:
        with pytest.raises(SystemExit) as exc:  # argparse: before any work
            measure.main(["--device", "cpu", "--untrained", flag, value])
        assert exc.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")
    argv = ["--device", "cpu", "--untrained", "--threads", "2", "--cpu-clock", "process"]
    assert run_cli(measure.main, argv) == 2
    assert "--cpu-clock process needs --device cpu --threads 1" in capsys.readouterr().err
    assert run_cli(measure.main, ["--device", "cpu", "--run", "x", "--width", "0.5"]) == 2
    assert "apply to --untrained only" in capsys.readouterr().err
    assert run_cli(measure.main, ["--device", "cpu", "--untrained", "--head", "mlp"]) == 2
    assert "Unknown exit head 'mlp'" in capsys.readouterr().err


def test_a_tiny_trained_run_from_multiexit_train(tmp_path):
    """End to end: multiexit.train on synthetic data exports a run; profiling measures it."""
    from multiexit.data import CifarArrays

    train = multiexit_train

    g = torch.Generator().manual_seed(0)
    templates = torch.randint(40, 216, (10, 3, 1, 1), generator=g).float()

    def make(n: int):
        y = torch.arange(n) % 10
        x = (templates[y] + torch.randn(n, 3, 32, 32, generator=g) * 12).clamp(0, 255)
        return x.to(torch.uint8), y

    arrays = CifarArrays(*make(160), *make(60), "synthetic colour templates (profiling test)")
    run = tmp_path / "checkpoints" / "tiny"
    cfg = train.TrainConfig(
        stage="all", run="tiny", runs_dir=str(tmp_path / "runs"), width=0.0625, batch_size=32,
        val_size=40, epochs_main=1, epochs_exits=1, accelerator="cpu", devices="1",
        progress=False, export=str(run),
    )  # fmt: skip
    train.train(cfg, arrays=arrays)
    out = tmp_path / "latency"
    assert measure.main(["--device", "cpu", "--run", str(run), *TIMING, "--out", str(out)]) == 0
    table = read_exit_table(out / "exit_table.csv", require_sidecar=True)
    accuracy = pd.read_csv(run / "exit_accuracy.csv")
    assert table.accuracy.tolist() == accuracy["accuracy"].tolist()
    assert table.metadata["model"]["data_source"] == arrays.source
    candidates = read_exit_table(out / "candidates.csv")
    assert 17 in candidates.exits and len(candidates.exits) <= 5


def test_busy_rule_counts_the_cores_left_by_the_measurement():
    # 2 logical CPUs, 1 measuring thread: up to 2 runnable processes (ours + one) is quiet
    assert metadata.busy_reason([2.0, 9.0, 9.0], 2, 1) is None
    assert metadata.busy_reason([2.01, 0.0, 0.0], 2, 1) == (
        "1-minute load average 2.01 > 2 (2 logical CPUs - 1 measuring thread(s) + 1)"
    )
    assert metadata.busy_reason([5.0, 0, 0], 8, 4) is None  # 8 - 4 + 1 = 5
    assert metadata.busy_reason([5.5, 0, 0], 8, 4).startswith("1-minute load average 5.5 > 5")
    assert metadata.busy_reason(None, 8, 1) is None and metadata.busy_reason([9.0], None, 1) is None


def test_cpu_governor_is_read_from_sysfs_where_it_exists(tmp_path):
    assert metadata.cpu_governor(tmp_path) is None  # containers and VMs: not exposed
    for cpu, governor in (("cpu0", "performance"), ("cpu1", "performance")):
        (tmp_path / cpu / "cpufreq").mkdir(parents=True)
        (tmp_path / cpu / "cpufreq" / "scaling_governor").write_text(governor + "\n")
    (tmp_path / "cpufreq").mkdir()  # not a CPU: ignored
    assert metadata.cpu_governor(tmp_path) == "performance"
    (tmp_path / "cpu12" / "cpufreq").mkdir(parents=True)
    (tmp_path / "cpu12" / "cpufreq" / "scaling_governor").write_text("powersave\n")
    assert metadata.cpu_governor(tmp_path) == "performance+powersave"


def test_the_table_records_machine_load_and_measure_warns_when_busy(tmp_path, monkeypatch, capsys):
    readings = iter([(0.5, 0.7, 0.9), (3.5, 1.5, 1.0)])  # quiet before, busy after
    monkeypatch.setattr(metadata.os, "getloadavg", lambda: next(readings))
    monkeypatch.setattr(measure.os, "cpu_count", lambda: 2)
    (tmp_path / "sys" / "cpu0" / "cpufreq").mkdir(parents=True)
    (tmp_path / "sys" / "cpu0" / "cpufreq" / "scaling_governor").write_text("schedutil\n")
    monkeypatch.setattr(metadata, "CPUFREQ_ROOT", tmp_path / "sys")
    out = tmp_path / "t"
    argv = ["--device", "cpu", "--threads", "1", "--untrained", *TINY, "--out", str(out)]
    assert measure.main(argv) == 0
    assert next(readings, "used up") == "used up"  # read exactly twice: before and after
    device = read_exit_table(out / "exit_table.csv").metadata["devices"]["cpu_1t"]
    assert device["load_average_before"] == [0.5, 0.7, 0.9]
    assert device["load_average_after"] == [3.5, 1.5, 1.0]
    assert device["busy_before"] is None
    assert device["busy_after"] == (
        "1-minute load average 3.5 > 2 (2 logical CPUs - 1 measuring thread(s) + 1)"
    )
    assert device["cpu_governor"] == "schedutil"
    assert capsys.readouterr().err == (
        "warning: the machine was busy after timing cpu_1t (1-minute load average 3.5 > 2 "
        "(2 logical CPUs - 1 measuring thread(s) + 1)); other work inflates latencies, so "
        "measure on a quiet machine (or add --cpu-clock process --interleave on the CPU).\n"
    )
