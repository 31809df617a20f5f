"""The transit stage end to end through the CLI: simulate, train, score, evaluate, score real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skysift.cli import main
from skysift.io import read_product, read_table


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("transit")
    assert main(["transit", "simulate", "--out", str(work / "set.h5"), "--n-samples", "96", "--seed", "4",
                 "--chunk-size", "48"]) == 0
    assert main(["train", "--task", "transit", "--product", str(work / "set.h5"), "--outdir", str(work / "model"),
                 "--epochs", "1", "--batch-size", "32", "--threads", "1", "--val-fraction", "0.25",
                 "--test-fraction", "0.25", "--model-json", '{"width_scale": 0.125, "fc_width": 16, "n_fc": 1}']) == 0
    return work


def test_simulated_set_has_views_labels_and_parameters(trained):
    product = read_product(trained / "set.h5")
    assert product.arrays["global_view"].shape == (96, 2001)
    assert product.arrays["local_view"].shape == (96, 201)
    assert set(np.unique(product.table["label"])) == {0, 1}
    assert {"period", "rp", "b", "kind"} <= set(product.table.colnames)


def test_score_and_evaluate(trained):
    assert main(["score", "--model", str(trained / "model"), "--product", str(trained / "set.h5"), "--split", "test",
                 "--out", str(trained / "scores.h5"), "--catalogue", str(trained / "ranked.ecsv")]) == 0
    ranked = read_table(trained / "ranked.ecsv")
    assert len(ranked) == 24 and np.all(np.diff(ranked["score"]) <= 0)
    assert main(["evaluate", "--task", "transit", "--scores", str(trained / "scores.h5"), "--product",
                 str(trained / "set.h5"), "--outdir", str(trained / "evaluation")]) == 0
    metrics = json.loads((trained / "evaluation" / "metrics.json").read_text())
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["n"] == 24
    for name in ("roc.png", "gallery.png"):
        assert (trained / "evaluation" / name).stat().st_size > 10_000


def test_score_folded_curve_and_bad_inputs(trained, tmp_path, capsys):
    phase = np.linspace(-0.5, 0.5, 3000)
    flux = 1.0 - 0.3 * np.exp(-0.5 * (phase / 0.01) ** 2) + np.random.default_rng(0).normal(0, 1e-3, phase.size)
    np.save(tmp_path / "folded.npy", np.vstack([phase, flux]))
    assert main(["transit", "score", "--model", str(trained / "model"), "--folded", str(tmp_path / "folded.npy"),
                 "--out", str(tmp_path / "score.ecsv")]) == 0
    score = read_table(tmp_path / "score.ecsv")["score"][0]
    assert 0.0 <= score <= 1.0
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    assert main(["transit", "score", "--model", str(trained / "model"), "--folded", str(tmp_path / "bad.npy")]) == 2
    assert "bad.npy" in capsys.readouterr().err
    assert main(["transit", "score", "--model", str(trained / "model")]) == 2


@pytest.mark.realdata
def test_score_real_eclipsing_binary(trained, shared_data, capsys):
    path = shared_data / "transit" / "eclipsebin_real_EBs" / "lc_tess_unwrapped.npy"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    assert main(["transit", "score", "--model", str(trained / "model"), "--folded", str(path)]) == 0
    assert "lc_tess_unwrapped.npy" in capsys.readouterr().out


def test_evaluate_with_very_few_held_out_samples(trained, tmp_path):
    """A held-out split smaller than the gallery (as in quick CI runs) still evaluates."""
    from skysift.evaluation import evaluate_scores
    from skysift.io import write_product
    from skysift.provenance import Provenance

    table = read_product(trained / "scores.h5").table[:3]
    write_product(tmp_path / "few.h5", product_type="scores", provenance=Provenance.collect(rule="t", config={}),
                  table=table)
    if len(set(table["label"])) < 2:
        pytest.skip("the three rows hold one class only")
    evaluate_scores(tmp_path / "few.h5", trained / "set.h5", tmp_path / "ev", task_name="transit")
    assert (tmp_path / "ev" / "gallery.png").is_file()


def _kepler_lightcurve(path, time, flux):
    from astropy.io import fits

    columns = [fits.Column(name="TIME", format="D", array=time),
               fits.Column(name="PDCSAP_FLUX", format="E", array=5000.0 * flux),
               fits.Column(name="PDCSAP_FLUX_ERR", format="E", array=np.full(time.size, 1.0)),
               fits.Column(name="SAP_QUALITY", format="J", array=np.zeros(time.size, dtype=np.int32))]
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "Kepler"
    fits.HDUList([primary, fits.BinTableHDU.from_columns(columns, name="LIGHTCURVE")]).writeto(path)
    return path


def test_score_kepler_lightcurve_and_tce_table(trained, tmp_path):
    """A FITS light curve with its ephemeris, alone and through a TCE table, gives the model all its inputs."""
    from skysift.transit.transit_model import transit_light_curve

    time = 131.5 + np.arange(4000) * 29.4244 / 1440
    flux = transit_light_curve(time, np.array([3.3]), np.array([132.4]), np.array([0.08]), np.array([10.0]),
                               np.array([0.3]), np.array([0.4]), np.array([0.25]))[0]
    flux = flux + 2e-4 * np.random.default_rng(3).standard_normal(time.size)
    path = _kepler_lightcurve(tmp_path / "kplr000757450-2009166043257_llc.fits", time, flux)
    duration_hours = 3.3 / np.pi * np.arcsin(np.sqrt(1.08**2 - 0.3**2) / 10.0) * 24.0
    assert main(["transit", "score", "--model", str(trained / "model"), "--lightcurve", str(path), "--period", "3.3",
                 "--t0", "132.4", "--duration", f"{duration_hours:.4f}", "--out", str(tmp_path / "one.ecsv")]) == 0
    single = read_table(tmp_path / "one.ecsv")["score"][0]
    assert 0.0 <= single <= 1.0
    (tmp_path / "tces.csv").write_text(
        "# DR24-like\nkepid,tce_plnt_num,tce_period,tce_time0bk,tce_duration,av_training_set\n"
        f"757450,1,3.3,132.4,{duration_hours:.4f},PC\n11111111,1,5.0,131.0,3.0,AFP\n"
    )
    assert main(["transit", "score", "--model", str(trained / "model"), "--tce-table", str(tmp_path / "tces.csv"),
                 "--lightcurve-dir", str(tmp_path), "--out", str(tmp_path / "table.ecsv")]) == 0
    table = read_table(tmp_path / "table.ecsv")
    assert list(table["flag"]) == ["ok", "no-lightcurve"]
    assert table["score"][0] == pytest.approx(single, rel=1e-5) and np.isnan(table["score"][1])
