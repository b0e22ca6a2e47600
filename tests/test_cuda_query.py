"""Asking the MPI library whether it takes CUDA device memory: the override, the info key, the vendor query."""

from __future__ import annotations

import pytest
from mpi4py import MPI

from collectives.runtime import cuda_query


@pytest.mark.parametrize("kinds,device", [
    ("mpi,system", False), ("mpi,system,cuda", True), ("system,cuda:device", True),
    ("cuda:host,cuda:managed", False), ("mpi, cuda:host:device", True), ("rocm:device", False), ("", False),
])
def test_the_info_keys_kinds_are_read_as_mpi_4_1_writes_them(kinds, device):
    assert any(cuda_query._takes_device(k) for k in kinds.split(",")) is device


@pytest.mark.parametrize("value,aware", [("1", True), ("on", True), ("0", False), ("No", False)])
def test_the_override_decides(value, aware, monkeypatch):
    monkeypatch.setenv(cuda_query.VARIABLE, value)
    assert cuda_query.setting_problem() is None
    assert cuda_query.local() == (aware, f"{cuda_query.VARIABLE}={value.lower()}")


def test_a_bad_override_is_named(monkeypatch):
    monkeypatch.setenv(cuda_query.VARIABLE, "maybe")
    assert "COLLECTIVES_CUDA_AWARE='maybe' is none of" in cuda_query.setting_problem()


def test_auto_asks_this_mpi_which_is_not_cuda_aware(monkeypatch):
    """The suite's MPICH wheel is built without CUDA: its info key lists no cuda kind, its query says no."""
    monkeypatch.setenv(cuda_query.VARIABLE, "auto")
    assert cuda_query.from_info() in (None, False)
    vendor = cuda_query.from_vendor()
    assert vendor is not None and vendor[0] is False, MPI.Get_library_version()
    assert cuda_query.local() == vendor
