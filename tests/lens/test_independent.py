"""The independent lenstronomy validation set: independence, reproducibility, cuts and product layout."""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lenstronomy")

from skysift.io import read_product  # noqa: E402
from skysift.lens import independent  # noqa: E402
from skysift.lens.independent import (  # noqa: E402
    FAMILIES,
    LOOKALIKE_FAMILIES,
    arc_signal_to_noise,
    draw_sample,
    family_counts,
    make_validation_set,
    point_source_depth,
)

#: The only skysift modules the independent simulation may use: provenance and product writing.
ALLOWED_SKYSIFT_IMPORTS = {"skysift.context", "skysift.io"}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import of {node.module!r} (hides what it uses)")
            modules.add(node.module or "")
    return modules


def test_module_imports_nothing_of_skysifts_simulator_or_priors():
    modules = _imported_modules(Path(independent.__file__))
    skysift = {module for module in modules if module.split(".")[0] == "skysift"}
    assert skysift <= ALLOWED_SKYSIFT_IMPORTS, f"independent.py imports {sorted(skysift - ALLOWED_SKYSIFT_IMPORTS)}"
    assert any(module.startswith("lenstronomy") for module in modules)
    # and at run time: drawing images loads none of skysift's simulation code
    code = ("import sys; from skysift.lens.independent import draw_sample; draw_sample('lens', 1); "
            "draw_sample('ring', 2); print(sorted(m for m in sys.modules if m.startswith('skysift')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(independent.__file__).parents[2])}).stdout
    for forbidden in ("skysift.lens.simulator", "skysift.lens.negatives", "skysift.lens.dataset",
                      "skysift.lens.injection", "skysift.simulate"):
        assert forbidden not in loaded


def test_draw_sample_is_a_pure_function_of_family_and_seed():
    for family in ("lens", "spiral"):
        first, columns = draw_sample(family, 11)
        again, columns_again = draw_sample(family, 11)
        other, _ = draw_sample(family, 12)
        assert first.shape == (64, 64) and first.dtype == np.float32
        assert np.array_equal(first, again) and columns == columns_again
        assert not np.array_equal(first, other)


def test_lenses_are_multiply_imaged_identifiable_and_bright_enough():
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    solver = LensEquationSolver(LensModel(["SIE", "SHEAR"]))
    for seed in range(3):
        _, row = draw_sample("lens", seed)
        assert row["arc_snr"] >= 10.0
        assert row["theta_E"] ** 2 > row["source_r_eff"] ** 2 + (row["seeing"] / 2) ** 2
        assert row["magnification"] * row["source_r_eff"] > row["seeing"] / 2  # tangentially resolved
        assert 0.6 <= row["seeing"] <= 0.9
        xs, _ = solver.image_position_from_source(
            row["lens_x"] + row["source_x"], row["lens_y"] + row["source_y"], _lens_kwargs(row), min_distance=0.01,
            search_window=10.0)
        assert len(xs) >= 2


def _lens_kwargs(row: dict[str, float]) -> list[dict[str, float]]:
    return [{"theta_E": row["theta_E"], "e1": row["lens_e1"], "e2": row["lens_e2"], "center_x": row["lens_x"],
             "center_y": row["lens_y"]},
            {"gamma1": row["shear_gamma1"], "gamma2": row["shear_gamma2"], "ra_0": 0.0, "dec_0": 0.0}]


def test_arclets_are_singly_imaged_just_outside_the_caustic():
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    solver = LensEquationSolver(LensModel(["SIE", "SHEAR"]))
    for seed in range(2):
        _, row = draw_sample("arclet", seed)
        distance = math.hypot(row["source_x"], row["source_y"])
        assert 1.05 * row["theta_E"] <= distance <= 1.8 * row["theta_E"] + 1e-9
        assert row["arc_snr"] >= 10.0
        # the source centre and its edge nearest the lens have one image each (lenstronomy's solver)
        nearest = 1.0 - 1.5 * row["source_r_eff"] / distance
        for scale in (1.0, nearest):
            xs, _ = solver.image_position_from_source(
                row["lens_x"] + scale * row["source_x"], row["lens_y"] + scale * row["source_y"], _lens_kwargs(row),
                min_distance=0.01, search_window=10.0)
            assert len(xs) == 1


def test_arc_signal_to_noise_sums_the_pixels_above_the_threshold():
    arc = np.array([[5.0, 0.5], [3.0, 0.0]])
    noise = np.ones((2, 2))
    assert arc_signal_to_noise(arc, noise) == pytest.approx(8.0 / math.sqrt(2.0))
    assert arc_signal_to_noise(np.zeros((2, 2)), noise) == 0.0
    with pytest.raises(ValueError, match="shape"):
        arc_signal_to_noise(arc, np.ones((3, 3)))


def test_depth_is_lsst_like_10_year_r_band():
    assert 27.0 < point_source_depth(0.9) < point_source_depth(0.6) < 28.0


def test_family_counts_share_the_lookalikes_equally():
    counts = family_counts(10, 23)
    assert counts["lens"] == 10 and sum(counts.values()) == 33
    assert set(counts) == set(FAMILIES)
    assert max(counts[f] for f in LOOKALIKE_FAMILIES) - min(counts[f] for f in LOOKALIKE_FAMILIES) <= 1
    with pytest.raises(ValueError, match="unknown family"):
        draw_sample("quasar", 1)


def test_validation_set_is_a_lens_product_the_trainer_reads(tmp_path):
    from skysift.train.data import ProductDataset

    path = make_validation_set(tmp_path / "validation.h5", n_lenses=3, n_lookalikes=7, seed=4, image_size=48, workers=2)
    product = read_product(path)
    assert product.product_type == "lens-validation-set"
    assert product.arrays["image"].shape == (10, 1, 48, 48) and product.arrays["image"].dtype == np.float32
    table = product.table
    assert sorted(set(table["family"])) == sorted(FAMILIES)
    assert list(table["label"][table["family"] == "lens"]) == [1, 1, 1] and table["label"].sum() == 3
    lensed = np.isin(table["family"], ["lens", "arclet"])
    assert np.all(table["arc_snr"][lensed] >= 10.0) and np.all(np.isnan(table["arc_snr"][~lensed]))
    row = table[int(np.flatnonzero(table["family"] == "ring")[0])]
    image, _ = draw_sample("ring", int(row["sample_seed"]), image_size=48)  # redrawn alone, in this process
    assert np.array_equal(image, product.arrays["image"][table["sample_seed"] == row["sample_seed"]][0, 0])
    dataset = ProductDataset(path, ("image",), label="label")
    (images,), labels = dataset[np.arange(10)]
    assert tuple(images.shape) == (10, 1, 48, 48) and labels.tolist() == list(table["label"])
    assert product.provenance.seed == 4
