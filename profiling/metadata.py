"""Provenance recorded beside each exit table: software versions, the device, and NVML readings
(clocks, temperature, power) taken before and after a GPU's measurement.

NVML comes from ``pynvml`` (the ``nvidia-ml-py`` package). When it cannot be imported or
initialised the measurement still runs and the metadata says ``{"available": false, "reason": ...}``.
"""

from __future__ import annotations

import os
import platform
from typing import Any


def software_metadata() -> dict[str, Any]:
    """Python, platform, torch, CUDA (as built into torch) and cuDNN versions."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": cudnn,
    }


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_metadata(threads: int) -> dict[str, Any]:
    """The CPU and the thread settings the measurement ran with."""
    import torch

    return {
        "kind": "cpu",
        "name": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "requested_threads": threads,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()),
        "load_average_1_5_15_min": load_average(),
    }


def load_average() -> list[float] | None:
    """The system load averages over 1, 5 and 15 minutes (runnable processes), if known: on a
    shared machine they tell how much other work competed with the measurement."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _nvml_handle(pynvml: Any, cuda_index: int) -> tuple[Any, str]:
    """The NVML handle of torch's CUDA device ``cuda_index``, matched by UUID, then PCI bus id
    (CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER can make NVML's order differ from torch's),
    falling back to the index."""
    import torch

    props = torch.cuda.get_device_properties(cuda_index)
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        for candidate in (text, f"GPU-{text}"):
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(candidate), "uuid"
            except Exception:  # noqa: BLE001 - try the next way of matching
                pass
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        domain = getattr(props, "pci_domain_id", 0)
        dev = getattr(props, "pci_device_id", 0)
        try:
            bus_id = f"{domain:08X}:{bus:02X}:{dev:02X}.0"
            return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id), "pci_bus_id"
        except Exception:  # noqa: BLE001
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(cuda_index), "index (assumed same order as CUDA)"


def _read(fn: Any, *args: Any) -> Any:
    try:
        value = fn(*args)
    except Exception:  # noqa: BLE001 - a field a GPU does not support is recorded as None
        return None
    return value.decode() if isinstance(value, bytes) else value


def nvml_snapshot(cuda_index: int) -> dict[str, Any]:
    """NVML readings for torch's CUDA device ``cuda_index``: name, driver and CUDA driver
    versions, SM/memory clocks (MHz), temperature (deg C), power draw and limit (W), P-state.

    Never raises: without NVML the result is ``{"available": False, "reason": ...}``.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no NVML library, no driver, no permission ...
        return {"available": False, "reason": f"NVML unavailable: {exc}"}
    try:
        handle, matched_by = _nvml_handle(pynvml, cuda_index)
        cuda_driver = _read(pynvml.nvmlSystemGetCudaDriverVersion_v2)
        power_mw = _read(pynvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = _read(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        return {
            "available": True,
            "matched_by": matched_by,
            "name": _read(pynvml.nvmlDeviceGetName, handle),
            "uuid": _read(pynvml.nvmlDeviceGetUUID, handle),
            "driver_version": _read(pynvml.nvmlSystemGetDriverVersion),
            "cuda_driver_version": (
                None if cuda_driver is None else f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}"
            ),
            "sm_clock_mhz": _read(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": _read(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": _read(
                pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_SM
            ),
            "temperature_c": _read(
                pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU
            ),
            "power_w": None if power_mw is None else power_mw / 1000.0,
            "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
            "pstate": _read(pynvml.nvmlDeviceGetPerformanceState, handle),
        }
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "reason": f"NVML query failed: {exc}"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def cuda_metadata(cuda_index: int) -> dict[str, Any]:
    """torch's view of CUDA device ``cuda_index`` (name, capability, memory)."""
    import torch

    props = torch.cuda.get_device_properties(cuda_index)
    return {
        "kind": "cuda",
        "cuda_index": cuda_index,
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "total_memory_gib": round(props.total_memory / 2**30, 2),
        "multiprocessors": props.multi_processor_count,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
