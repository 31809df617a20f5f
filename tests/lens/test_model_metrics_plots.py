"""Lens-finder network contract, metrics on hand-made cases, candidate gallery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from skysift.lens.metrics import roc_auc, roc_curve, tpr_at_false_positives, tpr_at_fpr
from skysift.lens.model import build_model, normalise
from skysift.lens.plots import candidate_gallery


@pytest.mark.parametrize(("channels", "size"), [(1, 64), (3, 45)])
def test_model_forward_shapes(channels: int, size: int) -> None:
    model = build_model(in_channels=channels, widths=(8, 16), depths=(1, 2))
    logits = model(torch.randn(5, channels, size, size))
    assert logits.shape == (5,) and logits.dtype == torch.float32
    model.eval()
    assert model(torch.randn(1, channels, size, size)).shape == (1,)


def test_model_stem_stride() -> None:
    """A stride-2 stem halves every feature map; the output contract is unchanged."""
    full, strided = build_model(widths=(8, 16), depths=(1, 1)), build_model(widths=(8, 16), depths=(1, 1), stem_stride=2)
    image = torch.randn(3, 1, 32, 32)
    assert strided(image).shape == (3,) == full(image).shape
    stem_input = full.stem_input(image)
    assert strided.stem(stem_input).shape[-1] == 16 and full.stem(stem_input).shape[-1] == 32
    with pytest.raises(ValueError, match="stem_stride"):
        build_model(stem_stride=3)


def test_symmetric_residual_cancels_point_symmetric_light() -> None:
    """A centred elliptical galaxy (point-symmetric) vanishes from the residual channel; an arc does not."""
    yy, xx = np.mgrid[:32, :32] - 15.5
    galaxy = np.exp(-np.hypot(xx * 0.8 + yy * 0.3, yy - xx * 0.2))
    arc = np.where((np.abs(np.hypot(xx, yy) - 8.0) < 1.0) & (xx > 0), 0.5, 0.0)
    model = build_model(widths=(8,), depths=(1,))
    stem_input = model.stem_input(torch.tensor(np.stack([galaxy, galaxy + arc])[:, None], dtype=torch.float32))
    assert stem_input.shape == (2, 2, 32, 32)
    torch.testing.assert_close(stem_input[0, 1], torch.zeros(32, 32))
    assert float(stem_input[1, 1].abs().sum()) == pytest.approx(2.0 * arc.sum(), rel=1e-5)
    assert build_model(symmetric_residual=False).stem_input(stem_input[:, :1]).shape == (2, 1, 32, 32)


def test_polar_view_turns_centred_arcs_into_rows() -> None:
    """A circular arc about the centre becomes a horizontal streak of the polar view; an off-centre blob does not."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    radius = np.hypot(xx, yy)
    arc = np.exp(-0.5 * (radius - 12.0) ** 2) * (xx > 0)
    blob = np.exp(-0.5 * ((xx - 12.0) ** 2 + (yy - 3.0) ** 2) / 2.0**2)
    model = build_model(widths=(8,), depths=(1,), polar_view=True)
    stem_input = model.stem_input(torch.tensor(np.stack([arc, blob])[:, None], dtype=torch.float32))
    assert stem_input.shape == (2, 4, 64, 64)
    polar = stem_input[:, 2].numpy()
    # Rows are 0.5 pixel of radius each: radius 12 is row ~23.5, the arc's 1-pixel sigma two rows.
    arc_rows = polar[0].sum(axis=1)
    assert abs(int(np.argmax(arc_rows)) - 23.5) <= 1
    assert arc_rows[19:29].sum() > 0.9 * arc_rows.sum()

    def azimuth_span(view: np.ndarray) -> float:
        columns = view.sum(axis=0)
        return float(np.mean(columns > 0.1 * columns.max()))

    # Half the circle (x > 0) spans half the columns; the blob, 2 pixels at radius 12, a fifth at most.
    assert 0.4 < azimuth_span(polar[0]) < 0.6
    assert azimuth_span(polar[1]) < 0.2
    assert model(torch.randn(3, 1, 64, 64)).shape == (3,)


def test_model_gradients_flow() -> None:
    model = build_model()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(torch.randn(4, 1, 32, 32)), torch.ones(4))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_normalise_is_scale_free_and_robust() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 2.0, (3, 1, 32, 32)).astype(np.float32)
    out = normalise(images)
    assert out.dtype == torch.float32 and out.shape == (3, 1, 32, 32)
    torch.testing.assert_close(normalise(images * 1000.0 + 7.0), out, atol=1e-4, rtol=1e-4)
    assert abs(float(out.median())) < 0.05


def test_metrics_hand_made() -> None:
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # Pairs ranked correctly: positives at ranks 1,2,4,7 vs negatives 3,5,6,8 -> 12/16.
    assert roc_auc(labels, scores) == pytest.approx(12 / 16)
    assert tpr_at_false_positives(labels, scores, 0) == pytest.approx(0.5)  # TPR0
    assert tpr_at_false_positives(labels, scores, 9) == pytest.approx(1.0)  # TPR10
    assert tpr_at_fpr(labels, scores, 0.25) == pytest.approx(0.75)
    assert tpr_at_fpr(labels, scores, 0.01) == pytest.approx(0.5)
    assert roc_auc([0, 1], [0.1, 0.9]) == 1.0 and roc_auc([1, 0], [0.1, 0.9]) == 0.0
    # Ties count one half; a tie at the top gives TPR0 = 0.
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert tpr_at_false_positives([0, 1, 1], [0.9, 0.9, 0.1], 0) == 0.0
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1 and np.isinf(thresholds[0])


def test_tpr10_with_many_negatives() -> None:
    labels = np.r_[np.ones(100), np.zeros(1000)]
    scores = np.r_[np.linspace(1, 2, 100), np.linspace(0, 1.5, 1000)]
    # Negatives above 1.5 - 1e-9: the top 10 false positives sit between 1.4865 and 1.5.
    tpr10 = tpr_at_false_positives(labels, scores, 9)
    tpr0 = tpr_at_false_positives(labels, scores, 0)
    assert tpr0 == pytest.approx(50 / 100, abs=0.011) and tpr0 < tpr10 <= 0.52


def test_metrics_reject_bad_input() -> None:
    for metric in (roc_auc, lambda labels, scores: tpr_at_false_positives(labels, scores, 9)):
        with pytest.raises(ValueError, match="both classes"):
            metric([1, 1], [0.2, 0.3])
        with pytest.raises(ValueError, match="differ in shape"):
            metric([1, 0], [0.2])
        with pytest.raises(ValueError, match="NaN or infinity"):
            metric([1, 0], [np.nan, 0.1])


def test_lens_metrics_reuse_the_shared_ones() -> None:
    """One implementation of the ROC metrics for every task (skysift.metrics)."""
    import skysift.lens.metrics as lens_metrics
    import skysift.metrics as shared

    assert lens_metrics.roc_curve is shared.roc_curve
    assert lens_metrics.roc_auc is shared.roc_auc
    assert lens_metrics.tpr_at_fpr is shared.tpr_at_fpr


def test_candidate_gallery() -> None:
    images = np.random.default_rng(0).normal(size=(12, 1, 16, 16))
    scores = np.linspace(0, 1, 12)
    figure = candidate_gallery(images, scores, n_show=6, ncols=3, labels=np.arange(12) % 2)
    assert isinstance(figure, Figure)
    titles = [a.get_title() for a in figure.axes if a.get_title()]
    assert len(titles) == 6 and titles[0].startswith("#11")
    with pytest.raises(ValueError):
        candidate_gallery(images, scores[:3])
