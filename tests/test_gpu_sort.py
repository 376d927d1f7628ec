"""The GPU radix sort (`engine.render.gpu_sort`) against numpy's stable argsort, on keys
chosen to break a sort that is not stable or not exact: all equal, reversed, three values,
only the extreme digits; counts of 0 and 1, around the tile size and not multiples of it,
more tiles than one workgroup, more tiles than one grid row. Skips where the GL context has
no compute shaders (Mesa llvmpipe has them)."""

import numpy as np
import pytest

moderngl = pytest.importorskip("moderngl")
from engine.render.gpu_sort import TILE, GpuRadixSort, grid  # noqa: E402


@pytest.fixture(scope="module")
def gpu_ctx(ctx):
    try:
        GpuRadixSort(ctx).release()
    except moderngl.Error as exc:  # no compute shaders (a GL 3.3 context without them)
        pytest.skip(f"no compute shaders: {str(exc).splitlines()[0]}")
    return ctx


@pytest.fixture(scope="module")
def sorter(gpu_ctx):
    s = GpuRadixSort(gpu_ctx)
    yield s
    s.release()


def _adversarial_keys(kind: str, n: int, rng) -> np.ndarray:
    if kind == "all_equal":
        return np.full(n, 40_000, np.uint32)
    if kind == "reversed":
        return (np.arange(n)[::-1] % 65536).astype(np.uint32)
    if kind == "many_ties":
        return (rng.integers(0, 3, n) * 21_845).astype(np.uint32)
    if kind == "extremes":  # only the lowest and highest key: every digit 0 or 15
        return np.where(rng.uniform(size=n) < 0.5, 0, 65535).astype(np.uint32)
    return rng.integers(0, 65536, n).astype(np.uint32)


@pytest.mark.parametrize("kind", ["all_equal", "reversed", "many_ties", "extremes", "random"])
@pytest.mark.parametrize("n", [0, 1, 2, 255, TILE - 1, TILE, TILE + 1, 4 * TILE + 97, 70_001])
def test_radix_sort_matches_numpy_stable_argsort(sorter, kind, n):
    """Counts around the tile size (not multiples of it), 0 and 1 elements, and more tiles
    than one workgroup handles, on keys where a sort that is not stable shows."""
    keys = _adversarial_keys(kind, n, np.random.default_rng(n))
    np.testing.assert_array_equal(sorter.argsort(keys), np.argsort(keys, kind="stable"))


def test_radix_sort_spreads_tiles_over_grid_rows(gpu_ctx):
    """More tiles than one grid row holds (65535 on real drivers, 3 here) still sort: the
    tiles go on in further rows of the same dispatch."""
    assert grid(20, 3) == (3, 7) and grid(0, 3) == (0, 0)
    s = GpuRadixSort(gpu_ctx, max_groups_x=3)
    rng = np.random.default_rng(1)
    for n in (3 * TILE, 20 * TILE - 5):
        keys = rng.integers(0, 200, n).astype(np.uint32)  # many ties
        np.testing.assert_array_equal(s.argsort(keys), np.argsort(keys, kind="stable"))
    s.release()


def test_radix_sort_of_32_bit_keys_and_a_count_read_on_the_gpu(gpu_ctx):
    """Keys of every bit width the sort takes; the count comes from a GPU buffer, so a
    smaller count sorts only that prefix and leaves the rest untouched."""
    rng = np.random.default_rng(2)
    s = GpuRadixSort(gpu_ctx, key_bits=32)
    keys = rng.integers(0, 2 ** 32, 5000, dtype=np.uint64).astype(np.uint32)
    keys[::7] = keys[0]
    np.testing.assert_array_equal(s.argsort(keys), np.argsort(keys, kind="stable"))
    s.release()
    s = GpuRadixSort(gpu_ctx)
    keys = rng.integers(0, 65536, 3000).astype(np.uint32)
    s.reserve(len(keys))
    s.keys.write(keys)
    s.values.write(np.arange(len(keys), dtype=np.uint32))
    counts = gpu_ctx.buffer(np.array([7, 1800], np.uint32))
    s.sort(counts, count_index=1)
    got = np.frombuffer(s.values.read(4 * len(keys)), np.uint32)
    np.testing.assert_array_equal(got[:1800], np.argsort(keys[:1800], kind="stable"))
    np.testing.assert_array_equal(got[1800:], np.arange(1800, 3000))
    counts.release()
    s.release()
    with pytest.raises(ValueError):
        GpuRadixSort(gpu_ctx, key_bits=12)
