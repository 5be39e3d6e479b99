"""Provenance recorded beside each exit table: software versions, the device, and NVML readings
(clocks, temperature, power) taken before and after a GPU's measurement.

NVML comes from ``pynvml`` (the ``nvidia-ml-py`` package). When it cannot be imported or
initialised the measurement still runs and the metadata says ``{"available": false, "reason": ...}``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
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
        "cpu_governor": cpu_governor(),
    }


def load_average() -> list[float] | None:
    """The system load averages over 1, 5 and 15 minutes (runnable processes), if known: on a
    shared machine they tell how much other work competed with the measurement."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


CPUFREQ_ROOT = Path("/sys/devices/system/cpu")


def cpu_governor(root: Path | None = None) -> str | None:
    """The cpufreq scaling governor of the logical CPUs (``"performance"``, ``"powersave"``,
    ...; several joined by ``+`` when they differ), or None where Linux does not expose it
    (containers, most VMs). ``root`` defaults to :data:`CPUFREQ_ROOT`."""
    found = set()
    for path in (root or CPUFREQ_ROOT).glob("cpu[0-9]*/cpufreq/scaling_governor"):
        try:
            found.add(path.read_text().strip())
        except OSError:
            continue
    return "+".join(sorted(found)) if found else None


def busy_reason(load: list[float] | None, logical_cpus: int | None, threads: int) -> str | None:
    """Why the machine counts as busy for a measurement using ``threads`` threads, or None.

    Rule: busy when the 1-minute load average (runnable processes, ours included once the
    measurement runs) exceeds the logical CPUs minus the threads the measurement uses plus
    one for this process: other work then competes for the measurement's cores. Unknown
    readings (no load average or CPU count) never count as busy.
    """
    if not load or not logical_cpus:
        return None
    spare = logical_cpus - threads + 1
    if load[0] <= spare:
        return None
    return (
        f"1-minute load average {load[0]:g} > {spare} "
        f"({logical_cpus} logical CPUs - {threads} measuring thread(s) + 1)"
    )


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


def mig_status(pynvml: Any, handle: Any) -> dict[str, Any]:
    """Whether the matched NVML device is part of a MIG (Multi-Instance GPU) setup, and so
    whose readings the snapshot holds.

    A handle that is itself a MIG instance reads ``"MIG instance"``. A handle of a physical GPU
    whose MIG mode is on means torch's device is one of its instances but NVML matched the
    parent (by PCI bus id or index): clocks, temperature and power are then the whole GPU's,
    shared with the other instances, and say ``"parent GPU"``. Otherwise ``{"mig": False}``.
    """
    if _read(pynvml.nvmlDeviceIsMigDeviceHandle, handle):
        return {"mig": True, "readings_of": "MIG instance"}
    mode = _read(pynvml.nvmlDeviceGetMigMode, handle)  # (current, pending); 1 = enabled
    current = mode[0] if isinstance(mode, (list, tuple)) else mode
    if current == getattr(pynvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return {
            "mig": True,
            "readings_of": "parent GPU (NVML fell back to the physical GPU of this MIG "
            "instance; clocks, temperature and power are shared with the other instances)",
        }
    return {"mig": False}


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
            **mig_status(pynvml, handle),
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
