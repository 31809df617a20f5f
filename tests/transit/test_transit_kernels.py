"""The pieces of the compiled transit kernel (:mod:`skysift.transit._transit_kernels`) against references."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
from scipy import special

from skysift.transit import _transit_kernels
from skysift.transit.transit_model import _ellpi, _transit_points, transit_light_curve

CADENCE = 29.4244 / 1440.0


def test_polynomial_sin_matches_math_sin():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-0.5 * np.pi, 0.5 * np.pi, 20000), 10.0 ** rng.uniform(-12, 0, 2000)])
    x = np.concatenate([x, -x, [0.0, 0.5 * np.pi, -0.5 * np.pi, np.nextafter(0.5 * np.pi, 0.0)]])
    got = np.array([_transit_kernels._sin(v) for v in x])
    expected = np.array([math.sin(v) for v in x])
    # Two units in the last place at most.
    assert np.all(np.abs(got - expected) <= 2.0 * np.spacing(np.abs(expected)))


def test_branch_free_acos_matches_math_acos():
    rng = np.random.default_rng(1)
    tiny = 10.0 ** rng.uniform(-17, 0, 2000)
    x = np.concatenate([rng.uniform(-1.0, 1.0, 20000), 1.0 - tiny, -1.0 + tiny, [-1.0, -0.5, 0.0, 0.5, 1.0]])
    x = np.concatenate([x, np.nextafter(0.5, 1.0) * np.array([1.0, -1.0])])
    got = np.array([_transit_kernels._acos(v) for v in x])
    expected = np.array([math.acos(v) for v in x])
    np.testing.assert_allclose(got, expected, rtol=2.5e-16, atol=5e-16)


def _elliptic_parameters(rng, size):
    """``kc = sqrt(1 - m)`` and ``n`` over the transit cases' ranges, ``m`` up to 1 - 1e-14."""
    m = np.concatenate([rng.uniform(0.0, 1.0, size - size // 4), 1.0 - 10.0 ** rng.uniform(-14, -1, size // 4)])
    n = np.concatenate([10.0 ** rng.uniform(-4, 4, size - size // 8), rng.uniform(-0.99, 0.0, size // 8)])
    order = rng.permutation(size)
    return np.sqrt(1.0 - m[order]), n[order], m[order]


def test_batched_elliptic_integrals_equal_serial_ones():
    rng = np.random.default_rng(2)
    kc, n, m = _elliptic_parameters(rng, 4000)
    work = _transit_kernels._elliptic_workspace()
    serial = np.array([_transit_kernels._complete_elliptic(k, v) for k, v in zip(kc, n)])
    # Groups of every size up to _LANES, each point frozen at its own convergence.
    lanes = _transit_kernels._LANES
    sizes = np.concatenate([np.arange(1, lanes + 1), np.full(kc.size, lanes)])
    batched = np.empty_like(serial)
    begin = 0
    for size in sizes:
        if begin >= kc.size:
            break
        group = slice(begin, min(begin + size, kc.size))
        ellk, elle, ellpi = (np.empty(group.stop - group.start) for _ in range(3))
        _transit_kernels._complete_elliptic_batch(kc[group], n[group], ellk, elle, ellpi, work)
        batched[group] = np.stack([ellk, elle, ellpi], axis=1)
        begin = group.stop
    np.testing.assert_array_equal(batched, serial)
    # And both are K, E and Pi.
    np.testing.assert_allclose(serial[:, 0], special.ellipk(m), rtol=1e-13)
    np.testing.assert_allclose(serial[:, 1], special.ellipe(m), rtol=1e-13)
    np.testing.assert_allclose(serial[:, 2], _ellpi(n, m), rtol=1e-13)


def test_compiled_transits_across_blocks_and_long_windows():
    # Rows with no transit, rows with more points than a block (short period, long
    # duration: capped windows), many small rows; the blocks' boundaries fall anywhere.
    rng = np.random.default_rng(3)
    time = CADENCE * np.arange(6000)
    n = 200
    period = 10.0 ** rng.uniform(-0.5, 1.5, n)
    period[:4] = [0.31, 0.4, 1e4, 0.25]
    t0 = rng.uniform(0.0, 1.0, n) * period
    t0[2] = 1e3  # never transits in the baseline
    rp = 10.0 ** rng.uniform(-2.0, -0.5, n)
    a = np.maximum(10.0 ** rng.uniform(0.2, 1.5, n), 1.5 * (1.0 + rp))
    a[:4] = 1.5 * (1.0 + rp[:4])
    a[2] = 100.0
    b = rng.uniform(0.0, 0.95, n) * (1.0 + rp)
    u1 = rng.uniform(0.0, 1.0, n)
    u2 = rng.uniform(-0.2, 1.0, n) * (1.0 - u1)
    values = (period, t0, rp, a, b, u1, u2)
    compiled = transit_light_curve(time, *values)
    rows, cols, model = _transit_points(time, *values)
    reference = np.ones_like(compiled)
    reference[rows, cols] = model
    assert np.bincount(rows, minlength=n).max() > _transit_kernels._BLOCK
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(compiled[2], 1.0)


def test_importing_transit_kernels_compiles_nothing():
    code = (
        "import skysift, skysift.transit.transit_model, skysift.transit.injection\n"
        "from skysift.transit import _transit_kernels\n"
        "import numba\n"
        "compiled = [n for n, f in vars(_transit_kernels).items()"
        " if isinstance(f, numba.core.registry.CPUDispatcher) and f.signatures]\n"
        "assert not compiled, compiled\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
