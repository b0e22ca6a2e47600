"""Where training samples come from: scikit-learn's bundled digits, an HDF5 file of (X, y), or a generator.

Every source has a training part and a test part and hands out rows by
index, so each rank reads only the rows of its own shard (from HDF5: one
sorted read per epoch).  Features are float32, labels int64 in ``[0, classes)``.
Image sources (generated shapes, or an HDF5 ``X`` of shape (N, C, H, W))
also hand out one tile of each image, so that under spatial parallelism
each rank reads only its own block of pixels (from HDF5: one hyperslab).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from collectives.algorithms.schedule import partition

__all__ = ["Source", "ImageSource", "digits", "synthetic", "shapes", "hdf5", "open_source", "DataError"]


ALL = slice(None)  # every row or column of an image


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


@dataclass
class ImageSource(Source):
    """A :class:`Source` of ``(N, C, H, W)`` images (``features`` is ``C``), read whole or as one tile of each.

    Its ``read(part, indices, rows=ALL, cols=ALL)`` returns rows ``rows`` and
    columns ``cols`` of the images ``indices``.
    """

    image: tuple[int, int] = (0, 0)

    def tiled(self, rows: slice, cols: slice) -> "ImageSource":
        """The same source, handing out only rows ``rows`` and columns ``cols`` of every image."""
        read = self.read
        return replace(self, read=lambda part, indices: read(part, indices, rows, cols))


def shapes(samples: int, size: int, seed: int = 0, test_fraction: float = 0.2) -> ImageSource:
    """``samples`` images of :mod:`training.shapes` (one channel, ``size`` square, 3 classes), drawn when read.

    The last ``round(samples * test_fraction)`` indices are the test part, drawn from the test seeds.
    """
    from . import shapes as drawn

    n_test = max(1, round(samples * test_fraction))
    if samples - n_test < 1:
        raise DataError(f"--samples {samples}: too few shapes for a training and a test part")

    def read(part, indices, rows=ALL, cols=ALL):
        x, y = drawn.images(indices, size, seed, part=int(part == "test"))
        return drawn.tile(x, rows, cols), y  # drawn whole, then cut: a tile depends on the whole shape

    return ImageSource(f"shapes {size}x{size}", samples - n_test, n_test, 1, len(drawn.CLASSES), read,
                       image=(size, size))


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


def hdf5(path: str, test_fraction: float = 0.2, seed: int = 0, *, share: tuple[int, int] = (0, 1)) -> Source:
    """An HDF5 file with datasets ``X`` (n, features) or images (n, channels, height, width), and ``y`` (n,) of
    class indices.

    ``X_test`` and ``y_test``, if present, are the test part; otherwise a
    seeded ``test_fraction`` of the rows is held out.  Rows are read on
    demand, so each rank touches only its own.  The file is checked when
    opened: shapes, types, labels ``0..C-1`` (no more classes than labelled
    rows), and finite features (NaN, inf, or beyond float32's range).
    Images give an :class:`ImageSource`, whose tiles are read as hyperslabs
    ``X[indices, :, rows, cols]`` (:func:`training.shapes.write_h5` writes
    such a file, chunked in tiles).

    Parameters
    ----------
    share : (rank, ranks)
        This rank scans its ``1/ranks`` of the rows of ``X`` (and ``X_test``)
        for non-finite values, so the ranks read the features once between
        them; a rank that finds one raises alone (the caller agrees).
    """
    import h5py

    if not os.path.exists(path):
        raise DataError(f"--data {path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            parts = _parts(f, path)
            shape = f["X"].shape[1:]
            rows = {part: f[xs].shape[0] for part, (xs, _) in parts.items()}
            labels = np.concatenate([f[ys][...] for _, ys in parts.values()])
            for xs, _ in parts.values():
                _scan_finite(f[xs], f"{path}: {xs}", share)
    except OSError as e:
        raise DataError(f"{path} is not a readable HDF5 file: {e}") from None
    if labels.min() < 0:
        raise DataError(f"{path}: labels must be class indices >= 0, got {labels.min()}")
    classes = int(labels.max()) + 1
    if classes > len(labels):
        raise DataError(f"{path}: the largest label {classes - 1} means {classes} classes, more than the "
                        f"{len(labels)} labelled rows; labels must be class indices 0..C-1 "
                        "(renumber them: np.unique(y, return_inverse=True)[1])")
    if "test" in parts:
        index = {"train": np.arange(rows["train"]), "test": np.arange(rows["test"])}
    else:
        parts["test"] = parts["train"]
        index = dict(zip(("train", "test"), _split(rows["train"], test_fraction, seed)))

    def read(part, idx, rows=ALL, cols=ALL):
        where = index[part][idx]
        xs, ys = parts[part]
        select = (ALL, rows, cols) if len(shape) == 3 else (ALL,)  # an image's tile, or every feature
        if len(where) == 0:
            return np.zeros((0, *shape), np.float32)[(ALL, *select)], np.zeros(0, np.int64)
        with h5py.File(path, "r") as f:
            return f[xs][(where, *select)], f[ys][where]

    name, n_train, n_test = os.path.basename(path), len(index["train"]), len(index["test"])
    if len(shape) == 3:
        return ImageSource(name, n_train, n_test, shape[0], classes, read, image=tuple(shape[1:]))
    return Source(name, n_train, n_test, shape[0], classes, read)


def _parts(f, path: str) -> dict[str, tuple[str, str]]:
    """``{"train": ("X", "y")}``, and ``"test": ("X_test", "y_test")`` if the file has them; every shape and type
    checked (features as numbers, labels as integers, one label a row, the same features in both)."""
    import h5py

    if "X" not in f or "y" not in f:
        raise DataError(f"{path} must hold datasets 'X' (n, features) and 'y' (n,); it has {sorted(f)}")
    if ("X_test" in f) != ("y_test" in f):
        given, missing = ("X_test", "y_test") if "X_test" in f else ("y_test", "X_test")
        raise DataError(f"{path} has {given} without {missing}: give both, or neither to hold out part of X")
    parts = {"train": ("X", "y"), "test": ("X_test", "y_test")} if "X_test" in f else {"train": ("X", "y")}
    for xs, ys in parts.values():
        for name in (xs, ys):
            if not isinstance(f[name], h5py.Dataset):
                kind = "group" if isinstance(f[name], h5py.Group) else type(f[name]).__name__
                raise DataError(f"{path}: {name} is an HDF5 {kind}, not a dataset")
        x, y = f[xs], f[ys]
        if len(x.shape) not in (2, 4):
            raise DataError(f"{path}: {xs} must be (n, features) or images (n, channels, height, width), got "
                            f"shape {x.shape}")
        if x.shape[0] == 0:
            raise DataError(f"{path}: {xs} holds no rows")
        if min(x.shape[1:]) == 0:
            raise DataError(f"{path}: {xs} has no features (shape {x.shape})")
        if x.shape[1:] != f["X"].shape[1:]:
            what = "features" if len(f["X"].shape) == 2 else "channels, height and width"
            raise DataError(f"{path}: {xs} must have X's {what} {f['X'].shape[1:]}, got shape {x.shape}")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path}: {xs} must hold numbers, got {x.dtype}")
        if y.shape != (x.shape[0],):
            raise DataError(f"{path}: {ys} must be ({x.shape[0]},), a label for each row of {xs}; got {y.shape}")
        if y.dtype.kind not in "iu":
            raise DataError(f"{path}: {ys} must hold class indices (integers), got {y.dtype}")
    return parts


def _scan_finite(x, name: str, share: tuple[int, int], block_bytes: int = 16 << 20) -> None:
    """Raise DataError if this rank's share of the rows of dataset ``x`` holds a value that is not a finite float32."""
    if x.dtype.kind != "f":
        return  # integers are finite as float32
    rank, ranks = share
    bounds = partition(x.shape[0], ranks)
    rows = max(1, block_bytes // (int(np.prod(x.shape[1:])) * x.dtype.itemsize))
    for lo in range(bounds[rank], bounds[rank + 1], rows):
        with np.errstate(over="ignore"):
            block = np.asarray(x[lo : min(lo + rows, bounds[rank + 1])], np.float32)
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            raise DataError(f"{name} row {lo + int(np.argmax(bad))} holds NaN or inf (or a value beyond float32's "
                            "range): training on it would diverge; clean the data first")


def open_source(spec: str, *, samples: int, features: int, classes: int, seed: int,
                share: tuple[int, int] = (0, 1), image_size: int = 64) -> Source:
    """``"digits"``, ``"synthetic"`` (with the given sizes), ``"shapes"`` (``samples`` images of ``image_size``)
    or a path to an ``.h5`` file (see :func:`hdf5`)."""
    if spec == "digits":
        return digits(seed=seed)
    if spec == "shapes":
        from .shapes import MAX_SIZE, MIN_SIZE

        if not MIN_SIZE <= image_size <= MAX_SIZE:
            raise DataError(f"--image-size {image_size}: shapes are drawn from {MIN_SIZE} to {MAX_SIZE} pixels")
        return shapes(samples, image_size, seed)
    if spec == "synthetic":
        return synthetic(samples, features, classes, seed)
    return hdf5(spec, seed=seed, share=share)
