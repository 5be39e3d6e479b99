"""Suite-wide settings: headless plotting and a small, fixed thread count (2-core CI machine)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402 - after the environment settings above


@pytest.fixture(scope="session")
def real_pack(tmp_path_factory):
    """The real CIFAR-10 JPEG pack, decoded once per test session into a fresh cache (never
    the cache in data/, which a test must not trust or write); skips when the pack is absent."""
    from multiexit.data import default_pack_path, load_pack

    path = default_pack_path()
    if not path.is_file():
        pytest.skip(f"the CIFAR-10 pack {path} is absent")
    return load_pack(path, cache_dir=tmp_path_factory.mktemp("cifar_cache"))
