"""The GPU path on a tiny-width model; skipped on machines without CUDA."""

import pytest
import torch

from profiling import measure
from profiling.table import read_exit_table

pytest.importorskip("multiexit.model")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    ("extra", "mode"),
    [
        ([], "cuda_events"),
        (["--cuda-graphs"], "cuda_graph_replay"),
        (["--dtype", "fp16"], "cuda_events"),
    ],
)
def test_gpu_table_with_metadata(tmp_path, extra, mode):
    out = tmp_path / "gpu"
    argv = ["--gpu", "0", "--untrained", "--width", "0.0625", "--repeats", "20", "--warmup", "5"]
    assert measure.main([*argv, *extra, "--quiet", "--out", str(out)]) == 0
    table = read_exit_table(out / "exit_table.csv", require_sidecar=True)
    (device,) = table.devices
    assert table.exits.tolist() == list(range(1, 18))
    info = table.metadata["devices"][device]
    assert info["timing_mode"] == mode and info["kind"] == "cuda"
    assert set(info["nvml_before"]) >= {"available"} and set(info["nvml_after"]) >= {"available"}
    assert all(s["count"] == 20 for s in info["latency_stats_ms"])
    assert (table.latency_ms(device) > 0).all()
