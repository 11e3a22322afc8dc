"""Shared test configuration: markers, seeding, and the CI policy for slow/GPU tests."""

from __future__ import annotations

import os

import pytest
import torch

try:
    from hypothesis import settings

    # Bounded, deterministic property tests: CI has 2 cores and a ~10 minute budget.
    settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
    settings.register_profile("dev", max_examples=200, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = os.environ.get("ANDI_RUN_SLOW") == "1"
    has_cuda = torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow benchmark/training: set ANDI_RUN_SLOW=1 to run")
    skip_gpu = pytest.mark.skip(reason="needs CUDA (none available)")
    for item in items:
        # get_closest_marker, not item.keywords: a folder named tests/gpu would make every test in it a "gpu" keyword.
        if item.get_closest_marker("slow") is not None and not run_slow:
            item.add_marker(skip_slow)
        if item.get_closest_marker("gpu") is not None and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: for tiny tensors extra threads only contend on the 2-core CI machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
