"""`--backend ray`: a grid run as Ray tasks on a local Ray instance writes the same files as the
local backend (every CSV byte for byte but its wall-clock columns, the saved actors, the figures,
the report but its invocation lines), and without Ray the flag is one clear error.

The Ray test is skipped when Ray is not installed (`pip install -e '.[cluster]'`)."""

from __future__ import annotations

import importlib.util
import io
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from grle_common.cli import run_cli
from offload.experiments.__main__ import main
from offload.experiments.pool import Job

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

# 8 jobs (one per method, both τ stepped together), every learner's actor saved: the files a
# Ray task writes on its node travel back too
GRID = [
    "csi",
    "--quick",
    "--seeds",
    "0",
    "--devices",
    "4",
    "--train-slots",
    "12",
    "--eval-slots",
    "8",
    "--save-actors",
]


def _run(tmp_path: Path, monkeypatch, name: str, *flags: str) -> Path:
    """Run GRID with ``flags`` into ``<tmp_path>/<name>/run`` from ``<tmp_path>/<name>``, so both
    runs name their folder ``run`` (the figures' titles name it)."""
    cwd = tmp_path / name
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main([*GRID, *flags, "--out", "run"]) == 0
    return cwd / "run"


def _csv_without_wall(path: Path) -> pd.DataFrame:
    """The CSV's cells as text, less its wall-clock columns (`wall_s`, `*_wall_s`)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame[[c for c in frame.columns if not compare_runs._is_wall(c)]]


def test_ray_backend_writes_the_local_backends_files(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    # the instance's sockets live under its temp folder, whose path must stay short (a Unix
    # socket path has at most 107 bytes): a folder of its own under /tmp, not tmp_path
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        local = _run(tmp_path, monkeypatch, "local", "--workers", "1")
        # --workers 2: the CLI starts (and then stops) a local instance of 2 CPUs
        remote = _run(tmp_path, monkeypatch, "ray", "--workers", "2", "--backend", "ray")
        assert not ray.is_initialized()  # shut down again
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())
    assert sum(f.endswith(".safetensors") for f in files) == 10  # 5 learners x 2 τ
    for name in files:
        a, b = local / name, remote / name
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(_csv_without_wall(a), _csv_without_wall(b))
        elif name.endswith((".md", "manifest.json")):  # less the lines naming the invocation
            assert compare_runs.compare_file(a, b, tol=0.0) is None, name
        else:  # actors (weights and metadata), figures
            assert a.read_bytes() == b.read_bytes(), name
    report = (remote / "csi.md").read_text()
    assert "a local Ray instance of 2 CPUs" in report
    assert '"backend": "ray"' in (remote / "manifest.json").read_text()


def test_backend_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert run_cli(main, [*GRID, "--backend", "ray", "--out", str(tmp_path / "run")]) == 2
    message = stderr.getvalue()
    assert message.startswith("error: --backend ray needs Ray") and message.count("\n") == 1
    assert "pip install -e '.[cluster]'" in message
    assert not (tmp_path / "run").exists()  # checked before any work


def test_address_without_backend_ray_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([*GRID, "--address", "auto"])
    assert exc.value.code == 2
    assert "--address names a Ray cluster; add --backend ray" in capsys.readouterr().err


def test_an_address_where_nothing_listens_is_refused_before_any_work(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on (Ray itself would retry for minutes)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    args = [*GRID, "--backend", "ray", "--address", f"127.0.0.1:{port}"]
    assert run_cli(main, [*args, "--out", str(tmp_path / "run")]) == 2
    assert stderr.getvalue().startswith(f"error: nothing answers at --address 127.0.0.1:{port}")
    assert not (tmp_path / "run").exists()


def test_a_job_class_from_a_script_survives_rays_pickling():
    """Ray sends a class it cannot import by name (defined in a script, or here in a function)
    by value: the class is rebuilt without its class keywords, then its attributes restored."""
    cloudpickle = pytest.importorskip("ray.cloudpickle")

    @dataclass(frozen=True)
    class Local(Job, kind="local-test", result_kind="cell"):
        n: int

        def run(self) -> pd.DataFrame:
            return pd.DataFrame({"n": [self.n]})

    job = cloudpickle.loads(cloudpickle.dumps(Local(3)))
    assert (job.kind, job.result_kind, job.n) == ("local-test", "cell", 3)
    assert job.run()["n"].tolist() == [3]
