"""Shared fixtures: small real data sets, and where the offline copies of the big ones live."""

from __future__ import annotations

import pytest
import ray
import torch

from symzoo.zoo.data import load_dataset, shared_data_candidates


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def cifar_npz():
    path = next((p for p in shared_data_candidates("cifar10_jpeg.npz") if p.exists()), None)
    if path is None:
        pytest.skip("cifar10_jpeg.npz not found in ../shared/data (or $SYMZOO_SHARED_DATA); CIFAR-10 tests need it")
    return path


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module (token auth on, as Ray 2.59+ starts it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
