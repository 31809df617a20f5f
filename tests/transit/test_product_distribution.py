"""The training-set product against a stored reference sample: unchanged in distribution, class by class.

The speed-ups of issue #22 (a cheaper knot-spacing choice, merged vetting
statistics, faster exact medians) may move individual values by rounding or
by a different but equivalent choice; what the model learns from is the
distribution of the product per class. Two chunks of the stage are simulated
now and every summary of :func:`product_summaries` is compared per kind with
the 2,048-sample reference of the older path by a two-sample KS test.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from skysift.transit.preprocess import MES_THRESHOLD

from ._product_summaries import REFERENCE_PATH, simulate_summaries

#: Per-test significance: 26 summaries x 4 kinds = 104 tests, so a family-wise false-alarm rate
#: of about 1 % for unchanged distributions (the seeds are fixed: the outcome is deterministic).
ALPHA = 1e-4


@pytest.fixture(scope="module")
def product():
    kinds, summaries = simulate_summaries((0, 1))
    with np.load(REFERENCE_PATH) as stored:
        reference = {name: stored[name] for name in stored.files}
    return kinds, summaries, reference


@pytest.mark.parametrize("kind", ["planet", "eb", "blend", "noise"])
def test_product_unchanged_in_distribution(product, kind):
    kinds, summaries, reference = product
    mine, theirs = kinds == kind, reference["kind"] == kind
    assert mine.sum() >= 50 and theirs.sum() >= 200
    p_values = {name: ks_2samp(values[mine], reference[name][theirs]).pvalue for name, values in summaries.items()}
    failed = {name: p for name, p in p_values.items() if p < ALPHA}
    assert not failed, f"{kind}: summaries whose distribution moved (KS p-values): {failed}"


def test_product_physics(product):
    """Checks that need no reference: the selection, and the injected noise's prior."""
    kinds, summaries, _ = product
    detected = kinds != "noise"
    assert np.all(summaries["mes"][detected] >= MES_THRESHOLD)
    # Noise negatives draw their white noise log-uniformly in 30-3,000 ppm.
    noise = summaries["noise"][kinds == "noise"]
    assert noise.min() >= 30.0 and noise.max() <= 3000.0
    assert abs(np.median(np.log10(noise)) - np.log10(300.0)) < 0.25
    # A detected planet's local view reaches its normalised minimum of -1 at the centre (within a bin or two).
    assert np.median(summaries["local_view_centre"][kinds == "planet"]) < -0.8
