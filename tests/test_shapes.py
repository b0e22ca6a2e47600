"""training.shapes: the generated shape images, their HDF5 file, and reading one tile of it."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from training import shapes
from training.shapes import CLASSES, generate, read_tile, tile, write_h5


@pytest.mark.parametrize("n,size,channels,dtype",
                         [(7, 32, 1, np.float32), (4, 100, 3, np.float64), (0, 64, 1, np.float32)])
def test_shapes_dtypes_and_value_range(n, size, channels, dtype):
    x, y = generate(n, size, seed=2, channels=channels, dtype=dtype)
    assert x.shape == (n, channels, size, size) and x.dtype == dtype
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()
    assert set(y.tolist()) <= {0, 1, 2} and CLASSES == ("circle", "square", "triangle")
    if n:
        assert all(len(np.unique(img)) > size * size // 2 for img in x[:, 0])  # noisy, not flat


def test_seeded_reproducible_and_image_i_independent_of_n():
    x, y = generate(10, 48, seed=5, channels=2)
    x2, y2 = generate(10, 48, seed=5, channels=2)
    assert x.tobytes() == x2.tobytes() and np.array_equal(y, y2)
    x4, y4 = generate(4, 48, seed=5, channels=2)
    assert x4.tobytes() == x[:4].tobytes() and np.array_equal(y4, y[:4])
    x6, _ = generate(10, 48, seed=6, channels=2)
    assert not np.array_equal(x6, x)
    assert all(not np.array_equal(a, b) for a, b in zip(x, x[1:]))  # every image drawn anew


def test_classes_balanced_and_shuffled():
    for n in (3, 100, 301):
        counts = np.bincount(generate(n, 32)[1], minlength=3)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    y = generate(60, 32, seed=1)[1]
    assert len({tuple(y[i:i + 3]) for i in range(0, 60, 3)}) > 2  # not the same order in every block


def _bright_box_fill(img):
    """Fraction of bright pixels in the bounding box of the bright ones: pi/4 circle, 1 square, 1/2 triangle."""
    bright = img > (np.median(img) + np.percentile(img, 99.5)) / 2
    r, c = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
    return bright[r[0]:r[-1] + 1, c[0]:c[-1] + 1].mean()


def test_classes_learnable_without_a_cnn():
    x, y = generate(300, 64, seed=7)
    fill = np.array([_bright_box_fill(img[0]) for img in x])
    guess = np.argmin(np.abs(fill[:, None] - np.array([np.pi / 4, 1.0, 0.5])), axis=1)
    assert (guess == y).mean() >= 0.95
    assert abs((guess == np.random.default_rng(0).permutation(y)).mean() - 1 / 3) < 0.1  # chance without labels


def test_large_images_are_fast():
    generate(1, 1024, seed=1)  # warm up
    t = time.perf_counter()
    x, _ = generate(1, 1024, seed=2)
    assert time.perf_counter() - t < 1.0 and x.shape == (1, 1, 1024, 1024)


def test_read_tile_is_exactly_a_slice_of_generate(tmp_path, monkeypatch):
    path = str(tmp_path / "shapes.h5")
    monkeypatch.setattr(shapes, "_BATCH_BYTES", 5 * 2 * 40 * 40 * 4)  # written in batches of 5 images
    write_h5(path, 15, 40, seed=3, channels=2, test_fraction=0.2, chunk_rows=16)
    x, y = generate(12, 40, seed=3, channels=2)
    with h5py.File(path, "r") as f:
        assert f["X"].shape == (12, 2, 40, 40) and f["X_test"].shape == (3, 2, 40, 40)
        assert f["X"].dtype == np.float32 and f["y"].dtype == np.int64 and f["y_test"].dtype == np.int64
        assert f["X"].chunks == (1, 2, 16, 16)
        assert list(f.attrs["classes"]) == list(CLASSES) and (f.attrs["size"], f.attrs["seed"]) == (40, 3)
        assert tile(f["X"], slice(8, 20), slice(30, 40)).tobytes() == x[:, :, 8:20, 30:40].tobytes()
        x_test = f["X_test"][...]
    index = np.array([0, 2, 3, 4, 11])
    for rows, cols in [(slice(0, 16), slice(16, 32)), (slice(27, 40), slice(0, 13)), (slice(32, 40), slice(35, 40)),
                       (slice(0, 40), slice(0, 40)), (slice(5, 6), slice(39, 40))]:
        xt, yt = read_tile(path, index, rows, cols)
        assert xt.dtype == np.float32 and xt.tobytes() == x[index][:, :, rows, cols].tobytes()
        assert yt.dtype == np.int64 and np.array_equal(yt, y[index])
        np.testing.assert_array_equal(tile(x[index], rows, cols), xt)
    xt, yt = read_tile(path, [1], slice(10, 20), slice(10, 20), part="test")
    assert xt.tobytes() == x_test[1:2, :, 10:20, 10:20].tobytes() and yt.shape == (1,)
    assert not any(np.array_equal(a, b) for a in x for b in x_test)  # test images from their own seeds
    xt, yt = read_tile(path, np.array([], np.int64), slice(0, 8), slice(4, 10))
    assert xt.shape == (0, 2, 8, 6) and yt.shape == (0,)
    with pytest.raises(ValueError, match="strictly increasing"):
        read_tile(path, [3, 1], slice(0, 8), slice(0, 8))
    with pytest.raises(IndexError, match="12 images"):
        read_tile(path, [5, 12], slice(0, 8), slice(0, 8))


@pytest.mark.parametrize("size", [31, 1025, 0, -64, 64.0])
def test_refused_sizes_name_the_allowed_range(size, tmp_path):
    with pytest.raises(ValueError, match="from 32 to 1024 pixels"):
        generate(3, size)
    with pytest.raises(ValueError, match="from 32 to 1024 pixels"):
        write_h5(str(tmp_path / "refused.h5"), 10, size)
    assert not (tmp_path / "refused.h5").exists()


def test_write_h5_refusals(tmp_path):
    with pytest.raises(OSError):
        write_h5(str(tmp_path / "no" / "such" / "dir.h5"), 10, 32)
    with pytest.raises(ValueError, match="empty training or test part"):
        write_h5(str(tmp_path / "tiny.h5"), 2, 32, test_fraction=0.1)
