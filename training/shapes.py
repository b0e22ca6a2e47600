"""Labelled images of circles, squares and triangles, drawn here at any resolution, for spatial parallelism.

Spatial (halo-exchange) parallelism splits every image of a batch into tiles, a block of rows x columns per
rank, so it needs images large enough to split and a way for each rank to read only its own tile.  Nothing may
be downloaded at run time, so :func:`generate` draws the images itself, from 32 x 32 up to 1024 x 1024: one
filled shape of ``CLASSES`` per image, at a random position and scale (5 % but at least 10 pixels, up to half
the side, always inside the image), of random intensity, on a uniform background with Gaussian noise, values
clipped to [0, 1].

Image ``i`` comes from its own generator, seeded with ``[seed, part, i]`` (part 0 trains, 1 tests), so the
same arguments give bitwise the same arrays and any subset can be drawn without the rest.  Labels cycle through
the three classes in blocks of three, each block shuffled by its own generator, so every prefix of the data is
balanced to within one image per class and no label depends on ``n``.

:func:`write_h5` stores a training and a test part in an HDF5 file chunked in tiles; :func:`read_tile` reads
back only the hyperslab ``X[index, :, rows, cols]`` and the labels ``y[index]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASSES", "MIN_SIZE", "MAX_SIZE", "generate", "images", "tile", "read_tile", "write_h5"]

CLASSES = ("circle", "square", "triangle")
MIN_SIZE, MAX_SIZE = 32, 1024
_BATCH_BYTES = 64 << 20  # write_h5 holds at most this much of X in memory (or one image, if larger)


def _check(n: int, size: int, channels: int) -> None:
    if not (isinstance(size, (int, np.integer)) and MIN_SIZE <= size <= MAX_SIZE):
        raise ValueError(f"image size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels, got {size!r}")
    if n < 0 or channels < 1:
        raise ValueError(f"need n >= 0 images and channels >= 1, got n={n}, channels={channels}")


def _label(seed: int, part: int, i: int) -> int:
    """Class of image ``i``: blocks of three images hold each class once, in an order drawn for the block."""
    return int(np.random.default_rng([seed, part + 2, i // 3]).permutation(3)[i % 3])


def _image(seed: int, part: int, i: int, label: int, size: int, channels: int) -> np.ndarray:
    """Image ``i`` of ``part`` as float32 (channels, size, size); only the shape's bounding box is rasterised."""
    rng = np.random.default_rng([seed, part, i])
    r = size * rng.uniform(max(0.05, 10 / size), 0.5) / 2  # half the shape's side: 5 % (>= 10 px) to 50 %
    cy, cx = rng.uniform(r, size - r, 2)
    pointing = rng.integers(4)  # a triangle's apex: up, down, left or right
    background = rng.uniform(0.0, 0.3, channels)
    shade = rng.uniform(background + 0.5, 1.0)  # >= 0.5 brighter than the background, in each channel
    sigma = rng.uniform(0.02, 0.06)
    img = rng.standard_normal((channels, size, size), dtype=np.float32)
    img *= np.float32(sigma)
    img += background.astype(np.float32)[:, None, None]
    y0, y1 = max(0, int(cy - r)), min(size, int(np.ceil(cy + r)))
    x0, x1 = max(0, int(cx - r)), min(size, int(np.ceil(cx + r)))
    v = ((np.arange(y0, y1) + 0.5 - cy) / r)[:, None]  # pixel centres in units of r, -1..1 across the box
    u = ((np.arange(x0, x1) + 0.5 - cx) / r)[None, :]
    if label == 0:
        inside = u * u + v * v <= 1.0
    elif label == 1:
        inside = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    else:  # isosceles, base on one side of the box and apex on the opposite one: half the box
        along, across = ((v + 1) / 2, u) if pointing < 2 else ((u + 1) / 2, v)
        along = 1 - along if pointing % 2 else along
        inside = (np.abs(across) <= along) & (along <= 1.0)
    img[:, y0:y1, x0:x1] += (inside * (shade - background).astype(np.float32)[:, None, None]).astype(np.float32)
    return np.clip(img, 0.0, 1.0, out=img)


def _draw(start: int, stop: int, size: int, seed: int, part: int, channels: int, dtype) -> tuple:
    y = np.array([_label(seed, part, i) for i in range(start, stop)], np.int64)
    x = np.empty((stop - start, channels, size, size), dtype)
    for k, i in enumerate(range(start, stop)):
        x[k] = _image(seed, part, i, int(y[k]), size, channels)
    return x, y


def generate(n: int, size: int, seed: int = 0, channels: int = 1, dtype=np.float32) -> tuple:
    """Draw ``n`` labelled images of one filled circle, square or triangle each.

    Parameters
    ----------
    n : int
        Number of images; image ``i`` is the same whatever ``n`` is.
    size : int
        Side of the square images in pixels, from ``MIN_SIZE`` (32) to ``MAX_SIZE`` (1024).
    seed : int
        Seed of the whole set; the same ``(n, size, seed, channels)`` gives bitwise the same arrays.
    channels : int
        Channels per image; each has its own background, shape intensity and noise.
    dtype : numpy dtype
        Type of ``X`` (drawn in float32, then converted).

    Returns
    -------
    X : ndarray, shape (n, channels, size, size)
        Pixel values in [0, 1].
    y : ndarray of int64, shape (n,)
        Class indices into ``CLASSES``; each class holds ``n // 3`` or ``n // 3 + 1`` images.

    Raises
    ------
    ValueError
        If ``size`` is outside 32..1024, ``n`` is negative or ``channels`` below 1.
    """
    _check(n, size, channels)
    return _draw(0, n, size, seed, 0, channels, dtype)


def images(indices, size: int, seed: int = 0, part: int = 0, channels: int = 1, dtype=np.float32) -> tuple:
    """Images ``indices`` of ``part`` (0 trains, 1 tests) and their labels, as :func:`generate` draws them.

    ``images(range(n), size, seed)`` is ``generate(n, size, seed)``; any subset is drawn without the rest.
    """
    indices = np.asarray(indices, np.int64)
    _check(len(indices), size, channels)
    y = np.array([_label(seed, part, int(i)) for i in indices], np.int64)
    x = np.empty((len(indices), channels, size, size), dtype)
    for k, i in enumerate(indices):
        x[k] = _image(seed, part, int(i), int(y[k]), size, channels)
    return x, y


def tile(images, rows: slice, cols: slice) -> np.ndarray:
    """The tile ``images[:, :, rows, cols]`` of an array or an open h5py dataset (reading only that hyperslab).

    Parameters
    ----------
    images : ndarray or h5py.Dataset, shape (n, channels, height, width)
    rows, cols : slice
        The tile's rows and columns; tiles at the edge may be smaller than the others.
    """
    return np.asarray(images[:, :, rows, cols])


def read_tile(path: str, index, rows: slice, cols: slice, part: str = "train") -> tuple:
    """Read ``X[index, :, rows, cols]`` and ``y[index]`` from a file made by :func:`write_h5`.

    Only the chunks of the tile are read: one hyperslab per contiguous run of ``index``.

    Parameters
    ----------
    path : str
        The HDF5 file.
    index : 1-D array of int
        Sample indices, strictly increasing.
    rows, cols : slice
        The tile's rows and columns of every image.
    part : {"train", "test"}
        Read ``X``/``y`` or ``X_test``/``y_test``.

    Returns
    -------
    X_tile : ndarray, shape (len(index), channels, tile rows, tile columns)
    y : ndarray of int64, shape (len(index),)
    """
    import h5py

    index = np.asarray(index, np.int64)
    if index.ndim != 1 or np.any(np.diff(index) <= 0):
        raise ValueError("index must be a 1-D array of strictly increasing sample indices")
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    xs, ys = ("X", "y") if part == "train" else ("X_test", "y_test")
    with h5py.File(path, "r") as f:
        x, y = f[xs], f[ys]
        if len(index) and (index[0] < 0 or index[-1] >= x.shape[0]):
            raise IndexError(f"{path}: {xs} has {x.shape[0]} images, index runs {index[0]}..{index[-1]}")
        if len(index) == 0:
            return np.asarray(x[0:0, :, rows, cols]), np.zeros(0, np.int64)
        runs = np.split(index, np.flatnonzero(np.diff(index) != 1) + 1)  # one hyperslab per contiguous run
        X = np.concatenate([np.asarray(x[run[0]:run[-1] + 1, :, rows, cols]) for run in runs])
        return X, np.concatenate([np.asarray(y[run[0]:run[-1] + 1], np.int64) for run in runs])


def write_h5(path: str, n: int, size: int, seed: int = 0, channels: int = 1, test_fraction: float = 0.2,
             chunk_rows: int | None = None) -> None:
    """Generate ``n`` images and write them to ``path`` as datasets ``X``, ``y``, ``X_test``, ``y_test``.

    ``X`` (float32) and ``y`` (int64) are the first ``n - round(n * test_fraction)`` images of
    :func:`generate` with the same arguments; the test images come from other seeds (part 1).  Images are
    drawn and written in batches of at most 64 MiB, so any ``n`` fits in memory.

    Parameters
    ----------
    path : str
        File to create (overwritten if it exists).
    n, size, seed, channels
        As for :func:`generate`.
    test_fraction : float
        Share of the ``n`` images in the test part; both parts must end up non-empty.
    chunk_rows : int, optional
        Side of a chunk's tile in pixels: chunks are ``(1, channels, chunk_rows, chunk_rows)``, so reading a
        tile touches only the chunks it overlaps.  Default ``min(size, 128)``.

    Raises
    ------
    ValueError
        For a refused size or an empty part.
    OSError
        If the file cannot be created.
    """
    import h5py

    _check(n, size, channels)
    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(f"n={n} with test_fraction={test_fraction} leaves an empty training or test part")
    edge = min(size, chunk_rows or 128)
    batch = max(1, _BATCH_BYTES // (4 * channels * size * size))
    with h5py.File(path, "w") as f:
        f.attrs.update(classes=list(CLASSES), size=size, seed=seed, channels=channels)
        for part, (xs, ys, count) in enumerate((("X", "y", n - n_test), ("X_test", "y_test", n_test))):
            x = f.create_dataset(xs, (count, channels, size, size), np.float32, chunks=(1, channels, edge, edge))
            y = f.create_dataset(ys, (count,), np.int64)
            for lo in range(0, count, batch):
                hi = min(count, lo + batch)
                x[lo:hi], y[lo:hi] = _draw(lo, hi, size, seed, part, channels, np.float32)
