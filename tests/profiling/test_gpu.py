"""The GPU path on a tiny-width model (skipped on machines without CUDA), and the NVML
metadata with a fake NVML (runs everywhere)."""

from __future__ import annotations

import types

import pytest
import torch

import multiexit.model  # noqa: F401 - an import error here must fail, not skip
from profiling import measure
from profiling import metadata as meta
from profiling.table import read_exit_table

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize(
    ("extra", "mode", "dtype"),
    [
        ([], "cuda_events", torch.float32),
        (["--cuda-graphs"], "cuda_graph_replay", torch.float32),
        (["--dtype", "fp16"], "cuda_events", torch.float16),
    ],
)
def test_gpu_table_with_metadata(tmp_path, monkeypatch, extra, mode, dtype):
    used = []  # the dtype of what each timed exit returns (eager) or of its input (graphs)
    time_callable = measure.time_callable
    capture = measure.capture_cuda_graph

    def recording_time_callable(fn, **kwargs):
        out = fn()
        if isinstance(out, torch.Tensor):
            used.append((out.device.type, out.dtype))
        return time_callable(fn, **kwargs)

    def recording_capture(fn, device, **kwargs):
        out = fn()
        used.append((out.device.type, out.dtype))
        return capture(fn, device, **kwargs)

    monkeypatch.setattr(measure, "time_callable", recording_time_callable)
    monkeypatch.setattr(measure, "capture_cuda_graph", recording_capture)
    out = tmp_path / "gpu"
    argv = ["--gpu", "0", "--untrained", "--width", "0.0625", "--repeats", "20", "--warmup", "5"]
    assert measure.main([*argv, *extra, "--quiet", "--out", str(out)]) == 0
    assert used[:17] == [("cuda", dtype)] * 17  # every exit ran on the GPU in that dtype
    table = read_exit_table(out / "exit_table.csv", require_sidecar=True)
    (device,) = table.devices
    assert table.exits.tolist() == list(range(1, 18))
    assert table.metadata["measurement"]["dtype"] == {torch.float16: "fp16"}.get(dtype, "fp32")
    info = table.metadata["devices"][device]
    assert info["timing_mode"] == mode and info["kind"] == "cuda"
    for key in ("nvml_before", "nvml_after"):
        assert isinstance(info[key]["available"], bool)
    assert all(s["count"] == 20 for s in info["latency_stats_ms"])
    assert (table.latency_ms(device) > 0).all()


@needs_cuda
def test_nvml_reads_the_gpu_torch_uses():
    snapshot = meta.nvml_snapshot(0)
    if not snapshot["available"]:
        pytest.skip(f"NVML is not usable here: {snapshot['reason']}")
    assert snapshot["name"] == torch.cuda.get_device_name(0)
    assert snapshot["matched_by"] in ("uuid", "pci_bus_id")
    assert snapshot["sm_clock_mhz"] > 0 and snapshot["temperature_c"] is not None
    assert snapshot["mig"] in (False, True)


def _fake_pynvml(*, mig_instance: bool, mig_mode: int, uuid_matches: bool):
    def by_uuid(uuid):
        if not uuid_matches:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "instance-handle"

    return types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByUUID=by_uuid,
        nvmlDeviceGetHandleByPciBusId=lambda bus: "parent-handle",
        nvmlDeviceGetHandleByIndex=lambda i: "parent-handle",
        nvmlDeviceIsMigDeviceHandle=lambda h: mig_instance and h == "instance-handle",
        nvmlDeviceGetMigMode=lambda h: [mig_mode, mig_mode],
        NVML_DEVICE_MIG_ENABLE=1,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetUUID=lambda h: "GPU-1234",
        nvmlSystemGetDriverVersion=lambda: "560.35",
        nvmlSystemGetCudaDriverVersion_v2=lambda: 12060,
        nvmlDeviceGetClockInfo=lambda h, kind: 1980,
        nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980,
        nvmlDeviceGetTemperature=lambda h, kind: 40,
        nvmlDeviceGetPowerUsage=lambda h: 70000,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700000,
        nvmlDeviceGetPerformanceState=lambda h: 0,
        NVML_CLOCK_SM=0,
        NVML_CLOCK_MEM=1,
        NVML_TEMPERATURE_GPU=0,
    )


@pytest.mark.parametrize(
    ("mig_instance", "mig_mode", "uuid_matches", "matched_by", "mig", "readings_of"),
    [
        (False, 0, True, "uuid", False, None),  # a whole GPU
        (True, 1, True, "uuid", True, "MIG instance"),
        (False, 1, False, "pci_bus_id", True, "parent GPU"),  # fallback to the parent
    ],
)
def test_nvml_snapshot_says_when_it_reads_the_parent_of_a_mig_instance(
    monkeypatch, mig_instance, mig_mode, uuid_matches, matched_by, mig, readings_of
):
    import sys

    fake = _fake_pynvml(mig_instance=mig_instance, mig_mode=mig_mode, uuid_matches=uuid_matches)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    props = types.SimpleNamespace(uuid="abcd", pci_bus_id=0x1B, pci_domain_id=0, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    snapshot = meta.nvml_snapshot(0)
    assert snapshot["available"] and snapshot["matched_by"] == matched_by
    assert snapshot["mig"] is mig
    assert (snapshot.get("readings_of") or "").startswith(readings_of or "")
    assert snapshot["power_w"] == 70.0 and snapshot["cuda_driver_version"] == "12.6"
