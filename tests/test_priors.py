from __future__ import annotations

import numpy as np
import pytest

from skysift.simulate.priors import (
    Choice,
    Fixed,
    LogUniform,
    TruncatedNormal,
    Uniform,
    describe,
    prior_from_config,
    sample_parameters,
)


def test_samples_respect_limits_and_shape():
    rng = np.random.default_rng(0)
    priors = {
        "a": Uniform(1, 2),
        "b": LogUniform(1, 100),
        "c": TruncatedNormal(0, 1, -0.5, 0.5),
        "d": Fixed(3.0),
        "e": Choice((0, 1), (0.9, 0.1)),
    }
    draws = sample_parameters(priors, 5000, rng)
    for name, prior in priors.items():
        low, high = prior.limits
        assert draws[name].shape == (5000,)
        assert draws[name].min() >= low and draws[name].max() <= high
    # log-uniform: median at the geometric mean
    assert np.median(draws["b"]) == pytest.approx(10, rel=0.1)
    assert draws["e"].mean() == pytest.approx(0.1, abs=0.02)


def test_reproducible_from_seed():
    priors = {"a": Uniform(0, 1), "b": LogUniform(1, 2)}
    first = sample_parameters(priors, 10, np.random.default_rng(4))
    second = sample_parameters(priors, 10, np.random.default_rng(4))
    assert all(np.array_equal(first[k], second[k]) for k in priors)


def test_from_config():
    assert prior_from_config({"uniform": [0.5, 2.0], "unit": "arcsec"}) == Uniform(0.5, 2.0, "arcsec")
    assert prior_from_config(3) == Fixed(3.0)
    assert prior_from_config({"normal": [0, 0.1], "low": -1, "high": 1}) == TruncatedNormal(0, 0.1, -1, 1)
    assert prior_from_config({"choice": [1, 2]}).limits == (1, 2)
    with pytest.raises(ValueError, match="exactly one of"):
        prior_from_config({"gaussian": [0, 1]})
    with pytest.raises(ValueError, match="high >= low"):
        prior_from_config({"uniform": [2, 1]})
    assert describe({"x": Uniform(0, 1)}) == {"x": "Uniform(low=0, high=1, unit=)"}
