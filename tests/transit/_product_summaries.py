"""Per-sample summaries of the transit training-set product, and the stored reference they are tested against.

``tests/transit/data/product_reference.npz`` holds these summaries for 2,048
samples (eight chunks of 256 in the stage's default mix, seeds 1000-1007)
made by the training-set path of commit 08f0962 (the compiled detrend and
detection statistic that match the numpy code in ``_reference_detrend.py``,
before the changes of issue #22 that are allowed to alter individual values
but not their distribution). Regenerate (only when the product is meant to
change) with::

    PYTHONPATH=src python tests/transit/_product_summaries.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The stage's default chunk: 256 light curves, half planets, negatives 0.4 EB, 0.2 blend, 0.4 noise.
CHUNK_MIX = {"planet": 128, "eb": 51, "blend": 26, "noise": 51}
REFERENCE_PATH = Path(__file__).with_name("data") / "product_reference.npz"
REFERENCE_SEEDS = tuple(range(1000, 1008))


def product_summaries(inputs: dict[str, np.ndarray], columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scalars per sample that the detrend, the selection and the views shape: name -> (N,) float64.

    The measured table columns (``mes``; ``snr``, ``depth`` and ``noise``
    after the MES selection), the eleven vetting scalars, and the centre
    and spread of each view.
    """
    from skysift.transit.preprocess import VETTING_SCALARS

    out = {name: np.asarray(columns[name], dtype=np.float64) for name in ("mes", "snr", "depth", "noise")}
    for i, name in enumerate(VETTING_SCALARS):
        out[name] = inputs["scalars"][:, i].astype(np.float64)
    centre = inputs["local_view"].shape[1] // 2
    for view in ("global_view", "local_view", "secondary_view", "odd_view", "even_view"):
        values = inputs[view].astype(np.float64)
        middle = values.shape[1] // 2
        out[f"{view}_centre"] = values[:, middle]
        out[f"{view}_spread"] = values.std(axis=1)
    out["odd_minus_even_centre"] = (inputs["odd_view"][:, centre] - inputs["even_view"][:, centre]).astype(np.float64)
    return out


def simulate_summaries(seeds: tuple[int, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Kinds (N,) and :func:`product_summaries` of one :data:`CHUNK_MIX` chunk per seed."""
    from skysift.transit.dataset import simulate_batch

    kinds, parts = [], []
    for seed in seeds:
        inputs, columns = simulate_batch(CHUNK_MIX, seed=seed)
        kinds.append(columns["kind"])
        parts.append(product_summaries(inputs, columns))
    return np.concatenate(kinds), {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


if __name__ == "__main__":
    kinds, summaries = simulate_summaries(REFERENCE_SEEDS)
    REFERENCE_PATH.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE_PATH, kind=kinds, **{name: v.astype(np.float32) for name, v in summaries.items()})
    print(f"wrote {REFERENCE_PATH}: {kinds.size} samples, {len(summaries)} summaries")
