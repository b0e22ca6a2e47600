"""Where training samples come from: scikit-learn's bundled digits, an HDF5 file of (X, y), or a generator.

Every source has a training part and a test part and hands out rows by
index, so each rank reads only the rows of its own shard (from HDF5: one
sorted read per epoch).  Features are float32, labels int64 in ``[0, classes)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Source", "digits", "synthetic", "hdf5", "open_source", "DataError"]


class DataError(ValueError):
    """A data source that cannot be used; the message says why and what to do."""


@dataclass
class Source:
    """Training and test rows behind :meth:`train_rows` and :meth:`test_rows`.

    ``read(part, indices)`` returns ``(X, y)`` for sorted ``indices`` of
    ``part`` (``"train"`` or ``"test"``).
    """

    name: str
    n_train: int
    n_test: int
    features: int
    classes: int
    read: object

    def train_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._rows("train", indices)

    def test_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._rows("test", indices)

    def _rows(self, part, indices):
        indices = np.asarray(indices, np.int64)
        order = np.argsort(indices, kind="stable")
        x, y = self.read(part, indices[order])  # HDF5 wants increasing indices
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return np.ascontiguousarray(x[back], np.float32), np.asarray(y[back], np.int64)


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _in_memory(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Source:
    train, test = _split(len(x), test_fraction, seed)
    parts = {"train": (x[train], y[train]), "test": (x[test], y[test])}
    classes = int(y.max()) + 1 if len(y) else 0
    return Source(name, len(train), len(test), x.shape[1], classes,
                  lambda part, idx: (parts[part][0][idx], parts[part][1][idx]))


def digits(test_fraction: float = 0.2, seed: int = 0) -> Source:
    """The 1,797 8x8 handwritten digits that ship with scikit-learn, pixels scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    return _in_memory("digits", (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), test_fraction, seed)


def synthetic(samples: int = 60000, features: int = 256, classes: int = 10, seed: int = 0,
              test_fraction: float = 0.1) -> Source:
    """Gaussian clusters around random class centres, for scaling studies (learnable, not trivial)."""
    if samples < 2 or features < 1 or classes < 2:
        raise DataError(f"synthetic data needs samples >= 2, features >= 1, classes >= 2; "
                        f"got {samples}, {features}, {classes}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features)).astype(np.float32)
    y = rng.integers(0, classes, samples)
    x = centres[y] + rng.standard_normal((samples, features)).astype(np.float32) * 6.0
    return _in_memory(f"synthetic({samples}x{features}, {classes} classes)", x, y, test_fraction, seed)


def hdf5(path: str, test_fraction: float = 0.2, seed: int = 0) -> Source:
    """An HDF5 file with datasets ``X`` (n, features) and ``y`` (n,) of class indices.

    ``X_test`` and ``y_test``, if present, are the test part; otherwise a
    seeded ``test_fraction`` of the rows is held out.  Rows are read on
    demand, so each rank touches only its own.
    """
    import h5py

    if not os.path.exists(path):
        raise DataError(f"--data {path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "X" not in f or "y" not in f:
                raise DataError(f"{path} must hold datasets 'X' (n, features) and 'y' (n,); it has {sorted(f)}")
            shape_x, shape_y = f["X"].shape, f["y"].shape
            has_test = "X_test" in f and "y_test" in f
            test_shape = f["X_test"].shape if has_test else None
            y_all = f["y"][...]
            y_test_all = f["y_test"][...] if has_test else None
    except OSError as e:
        raise DataError(f"{path} is not a readable HDF5 file: {e}") from None
    if len(shape_x) != 2 or shape_y != (shape_x[0],):
        raise DataError(f"{path}: X must be (n, features) and y (n,), got {shape_x} and {shape_y}")
    if has_test and (len(test_shape) != 2 or test_shape[1] != shape_x[1]):
        raise DataError(f"{path}: X_test must be (m, {shape_x[1]}), got {test_shape}")
    labels = np.concatenate([y_all, y_test_all]) if has_test else y_all
    if labels.dtype.kind not in "iu" or (len(labels) and labels.min() < 0):
        raise DataError(f"{path}: y must hold class indices >= 0 (integers), got {labels.dtype}")
    if has_test:
        rows = {"train": np.arange(shape_x[0]), "test": np.arange(test_shape[0])}
        names = {"train": ("X", "y"), "test": ("X_test", "y_test")}
    else:
        train, test = _split(shape_x[0], test_fraction, seed)
        rows = {"train": train, "test": test}
        names = {"train": ("X", "y"), "test": ("X", "y")}

    def read(part, idx):
        where = rows[part][idx]
        xs, ys = names[part]
        with h5py.File(path, "r") as f:
            if len(where) == 0:
                return np.zeros((0, shape_x[1]), np.float32), np.zeros(0, np.int64)
            return f[xs][where, :], f[ys][where]

    return Source(os.path.basename(path), len(rows["train"]), len(rows["test"]), shape_x[1],
                  int(labels.max()) + 1, read)


def open_source(spec: str, *, samples: int, features: int, classes: int, seed: int) -> Source:
    """``"digits"``, ``"synthetic"`` (with the given sizes) or a path to an ``.h5`` file."""
    if spec == "digits":
        return digits(seed=seed)
    if spec == "synthetic":
        return synthetic(samples, features, classes, seed)
    return hdf5(spec, seed=seed)
