"""Shared fixtures: a fixed seed per test (RNG restored afterwards), the data folder, a cache folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]  # the workflow's command, run from REPO
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one thread per pytest-xdist worker: workers share the cores, never oversubscribe


def data_dir() -> Path | None:
    """The staged datasets ($GPVAE_DATA_DIR, else ../shared/data), or None when absent."""
    for candidate in (os.environ.get("GPVAE_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


# The files that take longest, which a pool of workers (make test: pytest-xdist, a file per worker) should start
# first, so that none runs alone at the end: the smoke grid, then every chapter (nbval), then the rest.
LONGEST_FIRST = ("tests/test_workflow_run.py", "book/")


def pytest_collection_modifyitems(session, config, items):
    """Order the session's items by :data:`LONGEST_FIRST`, the order within each group kept."""
    def rank(item) -> int:
        path = Path(item.path).resolve()
        relative = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else ""
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if relative.startswith(prefix)), len(LONGEST_FIRST))
    items.sort(key=rank)


requires_data = pytest.mark.skipif(data_dir() is None, reason="staged MNIST/Omniglot not found (set GPVAE_DATA_DIR)")


@pytest.fixture(autouse=True)
def seeded():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Decompressed copies go to one cache per test session, never into the data folder."""
    monkeypatch.setenv("GPVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("GPVAE_QUIET", "1")


def assert_all_close(actual, expected, atol=1e-6, rtol=0.0, what="values"):
    """torch.allclose that reports the largest absolute difference."""
    actual, expected = torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    diff = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{what}: largest difference {diff:.3g} > atol {atol}"
