"""Normalisation properties and the model contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.realbogus.model import build_model
from skysift.realbogus.normalise import l2_normalise, normalise, robust_normalise, rot90_flip
from skysift.train.tasks import rot90_flip as trainer_rot90_flip


@pytest.fixture
def cutouts():
    rng = np.random.default_rng(0)
    x = rng.normal(100.0, 5.0, size=(4, 3, 21, 21)).astype(np.float32)
    x[:, 2] *= 0.01
    return x


def test_l2_unit_norm_and_scale_free(cutouts):
    out = l2_normalise(cutouts)
    norms = torch.linalg.vector_norm(out.flatten(2), dim=-1)
    torch.testing.assert_close(norms, torch.ones(4, 3))
    torch.testing.assert_close(l2_normalise(cutouts * 37.0 + 1000.0), out, atol=1e-5, rtol=1e-4)


def test_robust_noise_units(cutouts):
    out = robust_normalise(cutouts)
    flat = out.flatten(2)
    torch.testing.assert_close(flat.median(dim=-1).values, torch.zeros(4, 3), atol=0.05, rtol=0)
    mad = (flat - flat.median(dim=-1, keepdim=True).values).abs().median(dim=-1).values * 1.4826
    torch.testing.assert_close(mad, torch.ones(4, 3), atol=0.05, rtol=0)
    spiked = cutouts.copy()
    spiked[0, 0, 10, 10] = 1e9
    assert robust_normalise(spiked).max() == 50.0


def test_nan_pixels_become_zero(cutouts):
    cutouts[1, 0, :5] = np.nan
    for method in ("l2", "robust", "none"):
        out = normalise(cutouts, method)
        assert torch.isfinite(out).all()
        assert torch.all(out[1, 0, :5] == 0)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(cutouts, "zscore")


def test_augmentation_is_the_trainers():
    assert rot90_flip is trainer_rot90_flip


@pytest.mark.parametrize("width", [4, 16])
def test_model_contract(width):
    torch.manual_seed(0)
    model = build_model(width=width, dense=32)
    x = torch.randn(5, 3, 63, 63) * 100 + 1000
    x[0, :, :10] = float("nan")
    logits = model.eval()(x)
    assert logits.shape == (5,) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # Normalisation inside forward: the unit and sky level of the stamps do not matter.
    torch.testing.assert_close(model(x * 3.0 + 50.0), logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="63"):
        model(torch.zeros(2, 3, 31, 31))


def test_model_other_stamp_size_and_backward():
    model = build_model(stamp_size=31, width=4, dense=8, normalisation="robust")
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(torch.randn(3, 3, 31, 31)), torch.ones(3))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
