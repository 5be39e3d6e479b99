"""`--backend ray`: a grid run as Ray tasks on a local Ray instance writes the same files as the
local backend (every CSV byte for byte but its wall-clock columns, the saved actors, the figures,
the report but its invocation lines), and without Ray the flag is one clear error. A lost raylet,
node or connection (injected: Ray's calls run in this process and raise Ray's own errors) ends in
one `error:` line with the jobs saved and the command that resumes.

The Ray test is skipped when Ray is not installed (`pip install -e '.[cluster]'`)."""

from __future__ import annotations

import importlib.util
import io
import shlex
import shutil
import socket
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from grle_common.cli import run_cli
from offload.experiments import ray_backend
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


class _Ref:
    """An object ref of :class:`_FakeRay`: the call it stands for."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args


class _FakeRay:
    """The calls of Ray that `ray_backend.run_tasks` makes, run in this process, with Ray's
    own exception classes; once ``after`` results have been fetched, the next ``ray.<at>`` call
    raises ``fault`` (a lost raylet, node or connection), as a real cluster would."""

    def __init__(self, fault=None, *, at="get", after=0):
        self.exceptions = pytest.importorskip("ray").exceptions
        self.fault, self.at, self.after, self.fetched = fault, at, after, 0

    def remote(self, **_options):
        return lambda fn: SimpleNamespace(remote=lambda *args: _Ref(fn, args))

    def _maybe_fail(self, call):
        if self.fault is not None and call == self.at and self.fetched == self.after:
            raise self.fault

    def wait(self, refs, num_returns=1):
        self._maybe_fail("wait")
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        self._maybe_fail("get")
        self.fetched += 1
        return ref.fn(*ref.args)

    def cancel(self, ref, force=False):
        raise self.exceptions.RaySystemError("the cluster is gone")  # cancelling may fail too


def _use_ray(monkeypatch, fake: _FakeRay) -> None:
    monkeypatch.setattr(ray_backend, "session", lambda *_args: nullcontext(fake))


@pytest.mark.parametrize(
    ("at", "fault", "line"),
    [
        (
            "get",
            "LocalRayletDiedError",
            "LocalRayletDiedError: The task's local raylet died. Check raylet.out for more "
            "information.",
        ),
        ("wait", "RaySystemError", "RaySystemError: System error: connection to the GCS lost"),
    ],
)
def test_a_lost_ray_cluster_is_one_error_line_with_the_saved_jobs(
    tmp_path, monkeypatch, capsys, at, fault, line
):
    exceptions = pytest.importorskip("ray").exceptions
    error = (
        exceptions.LocalRayletDiedError()
        if fault == "LocalRayletDiedError"
        else exceptions.RaySystemError("connection to the GCS lost")
    )
    out = tmp_path / "run"
    argv = [*GRID, "--backend", "ray", "--workers", "2", "--out", str(out)]
    _use_ray(monkeypatch, _FakeRay(error, at=at, after=3))
    assert run_cli(main, argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: Ray lost a node or the connection ({line}); 3 of 8 jobs are saved in "
        f"{out / '.progress'}; resume with: python -m offload.experiments {shlex.join(argv)}"
    )
    assert len(list((out / ".progress" / "jobs").glob("*.pkl"))) == 3
    # the command it prints resumes once Ray is back
    _use_ray(monkeypatch, _FakeRay())
    assert main(argv) == 0
    assert "resuming: 3 of 8 jobs already finished" in capsys.readouterr().out
    assert (out / "csi.csv").exists() and not (out / ".progress").exists()


def test_a_cluster_lost_before_any_job_leaves_nothing(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    out = tmp_path / "run"
    _use_ray(monkeypatch, _FakeRay(ray.exceptions.WorkerCrashedError(), after=0))
    assert run_cli(main, [*GRID, "--backend", "ray", "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: Ray lost a node or the connection (WorkerCrashedError: The worker died "
        "unexpectedly while executing this task. Check python-core-worker-*.log files for more "
        "information.); no job had finished, so nothing was saved"
    )
    assert not out.exists()


def test_a_jobs_own_error_on_ray_is_the_jobs_error(monkeypatch):
    """A job that raises is a bug to see in full, not a lost cluster."""
    ray = pytest.importorskip("ray")

    class Failing(_FakeRay):
        def get(self, ref):
            cause = ValueError("a bug in the job")
            raise ray.exceptions.RayTaskError("run_on_node", "Traceback ...", cause)

    with pytest.raises(ValueError, match="a bug in the job"):
        ray_backend.run_tasks(Failing(), {0: _Noop()}, lambda *_: None, lambda: None)


@dataclass(frozen=True)
class _Noop(Job, kind="noop-test", result_kind="cell"):
    def run(self) -> pd.DataFrame:
        return pd.DataFrame({"n": [0]})


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("notahost", "error: --address notahost is not a Ray address; pass `auto` on a node of the "
         "cluster, HOST:PORT of its head (e.g. 10.0.0.5:6379) or ray://HOST:PORT for Ray Client "
         "(port 10001).\n"),
        ("host:99999", "error: --address host:99999 is not a Ray address; pass `auto` on a node of "
         "the cluster, HOST:PORT of its head (e.g. 10.0.0.5:6379) or ray://HOST:PORT for Ray "
         "Client (port 10001).\n"),
    ],
)  # fmt: skip
def test_an_address_ray_cannot_read_is_one_sentence(tmp_path, capsys, address, message):
    pytest.importorskip("ray")
    out = tmp_path / "run"
    assert run_cli(main, [*GRID, "--backend", "ray", "--address", address, "--out", str(out)]) == 2
    assert capsys.readouterr().err == message
    assert not out.exists()
