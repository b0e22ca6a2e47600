"""The local reduction kernels against numpy, serial and multithreaded, with NaN and signed-zero ties."""

from __future__ import annotations

import numpy as np
import pytest

from numa import threads
from collectives.errors import CollectiveError
from collectives.runtime.reduce_ops import (
    DTYPES,
    OPS,
    PARALLEL_BYTES,
    arithmetic_op,
    check_op,
    combine,
)

REFERENCE = {"sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}


@pytest.mark.parametrize("size", ["odd", "parallel"])
@pytest.mark.parametrize("op", list(REFERENCE))
@pytest.mark.parametrize("dtype", [str(d) for d in DTYPES])
def test_combine_matches_numpy(dtype, op, size, monkeypatch):
    monkeypatch.setattr(threads, "count", lambda: 2)  # the threaded kernel runs above the size threshold
    rng = np.random.default_rng()
    n = 1001 if size == "odd" else PARALLEL_BYTES // np.dtype(dtype).itemsize + 7
    if dtype.startswith("int"):
        a, b = (rng.integers(-50, 50, n).astype(dtype) for _ in range(2))
    else:
        a, b = (rng.uniform(0.5, 2, n).astype(dtype) for _ in range(2))
    want = REFERENCE[op](a, b)
    for first in (False, True):
        got = a.copy()
        combine(got, b, op, incoming_first=first)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("op", ["min", "max"])
def test_nan_propagates_and_ties_follow_operand_order(dtype, op):
    a = np.array([np.nan, 1.0, -0.0, 0.0], dtype)
    b = np.array([1.0, np.nan, 0.0, -0.0], dtype)
    left = a.copy()
    combine(left, b, op)  # a (op) b: ties keep a
    assert np.isnan(left[:2]).all()
    assert np.signbit(left[2]) and not np.signbit(left[3])
    # the partner computes the same value with the operands the other way round
    right = b.copy()
    combine(right, a, op, incoming_first=True)  # a (op) b again, a arriving
    assert np.array_equal(left.view(np.uint8), right.view(np.uint8))


def test_avg_sums_and_refuses_integers():
    assert check_op("avg", np.dtype("float32")) == "sum"
    with pytest.raises(CollectiveError, match="floating"):
        check_op("avg", np.dtype("int32"))
    with pytest.raises(CollectiveError, match="unknown op"):
        check_op("mean", np.dtype("float32"))


def test_the_arithmetic_of_every_op():
    assert {op: arithmetic_op(op) for op in OPS} == {
        "sum": "sum", "prod": "prod", "min": "min", "max": "max", "avg": "sum"}
    for op in OPS:  # check_op answers the same for a floating dtype
        assert check_op(op, np.dtype("float64")) == arithmetic_op(op)
