"""Model contract: forward(strain (N, 2, T) float32) -> logits (N,)."""

from __future__ import annotations

import pytest
import torch

from skysift.gw.model import build_model


@pytest.mark.parametrize("variant", ["george-huerta", "deep"])
@pytest.mark.parametrize("n_samples", [2048, 1024])
def test_forward_shapes(variant, n_samples):
    torch.manual_seed(0)
    model = build_model(variant, n_samples=n_samples)
    logits = model(torch.randn(3, 2, n_samples))
    assert logits.shape == (3,) and logits.dtype == torch.float32
    logits.sum().backward()


def test_unknown_variant():
    with pytest.raises(ValueError, match="deep"):
        build_model("resnet")
