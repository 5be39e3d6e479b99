"""Commands print nothing a user cannot act on: upstream deprecation warnings are filtered."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_offload_help_has_no_upstream_future_warning():
    # torch-geometric's `torch.jit.script` FutureWarning used to open every offload command;
    # -W default shows every warning that is not filtered by the package itself
    done = subprocess.run(
        [sys.executable, "-W", "default", "-m", "offload.experiments", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "usage:" in done.stdout
    assert done.stderr == "", done.stderr
