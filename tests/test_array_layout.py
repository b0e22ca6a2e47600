"""The compiled reader of numpy's array header, against what numpy itself reports."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from collectives.runtime import array_layout as L

USE = L.C_CONTIGUOUS | L.ALIGNED
WRITE = USE | L.WRITEABLE


@njit(cache=True)
def _address(obj, kind, descr, size, need):
    return L.address(obj, kind, descr, size, need)


def _read(a, need=WRITE, size=None, dtype=None):
    return _address(id(a), id(np.ndarray), id(a.dtype if dtype is None else dtype),
                    a.size if size is None else size, need)


def test_this_numpy_is_laid_out_as_the_reader_expects():
    assert L.verified()


@pytest.mark.parametrize("shape", [(5,), (2, 3), (1, 1, 4), ()])
def test_a_usable_array_gives_its_data_address(shape):
    a = np.zeros(shape, np.float32)
    assert _read(a) == a.ctypes.data


def test_what_is_refused_gives_zero():
    a = np.zeros(6, np.float64)
    readonly = np.zeros(6, np.float64)
    readonly.flags.writeable = False
    misaligned = np.zeros(8 * 6 + 1, np.uint8)[1:].view(np.float64)
    assert _read(readonly) == 0
    assert _read(readonly, need=USE) == readonly.ctypes.data  # read-only is fine for what is only read
    assert _read(np.zeros(12, np.float64)[::2]) == 0  # strided
    assert _read(misaligned) == 0
    assert _read(a, size=5) == 0
    assert _read(a, dtype=np.dtype(np.float32)) == 0
    assert _read(np.zeros((2, 3), np.float64).T) == 0  # Fortran order
    assert _read(np.zeros((), np.float64), size=2) == 0  # a 0-d array has one element


def test_objects_that_are_not_exactly_ndarray_give_zero():
    a = np.zeros(4, np.float32)
    others = ([0.0] * 4, a.view(np.recarray), np.float32(1))  # held: their ids stay theirs while read
    for obj in others:
        assert _address(id(obj), id(np.ndarray), id(a.dtype), np.size(obj), USE) == 0, type(obj)
