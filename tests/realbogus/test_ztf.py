"""ZTF alert packets: the 16 public packets, damaged copies, scoring and the gallery."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import fastavro
import numpy as np
import pytest
import torch

from skysift.realbogus.model import build_model
from skysift.realbogus.plots import realbogus_gallery, triplet_gallery
from skysift.realbogus.ztf import read_alerts, score_alerts, spearman_with

ALERTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "diffim" / "ztf_alert_packets"
GOOD = "472263571115115000.avro"


@pytest.fixture
def alerts_dir() -> Path:
    if not ALERTS.is_dir():
        pytest.skip(f"ZTF alert packets not found at {ALERTS}")
    return ALERTS


def _rewrite(source: Path, destination: Path, change) -> None:
    with source.open("rb") as stream:
        reader = fastavro.reader(stream)
        schema, records = reader.writer_schema, list(reader)
    for record in records:
        change(record)
    with destination.open("wb") as stream:
        fastavro.writer(stream, schema, records)


@pytest.mark.realdata
def test_reads_the_public_packets(alerts_dir):
    cutouts, table = read_alerts(alerts_dir)
    assert cutouts.shape == (16, 3, 63, 63) and cutouts.dtype == np.float32
    assert table["usable"].all() and np.isfinite(cutouts).all()
    assert "forcedphot_test_1660293514215020000.avro" in table["file"]
    # drb exists from schema 3.3 on; older packets give NaN, never 0.
    assert np.isfinite(table["drb"]).sum() == 3 and np.isfinite(table["rb"]).all()
    flags = dict(zip(table["file"], table["flag"], strict=True))
    assert "padded" in flags["396522680015040001.avro"]  # 41 rows at the CCD's bottom edge
    assert "padded" in flags["472263571115115014.avro"]  # 53 columns at the right edge
    assert "nan-filled" in flags["472263571115095002.avro"]
    assert flags[GOOD] == ""
    # The 41-row stamp (ypos 10.4) is padded below: the raw bottom rows were NaN and became the median.
    row = list(table["file"]).index("396522680015040001.avro")
    assert np.all(cutouts[row, 0, :22] == cutouts[row, 0, 0, 0])


@pytest.mark.realdata
def test_bad_packets_are_flagged_not_fatal(alerts_dir, tmp_path):
    shutil.copy(alerts_dir / GOOD, tmp_path / "a_good.avro")
    data = (alerts_dir / GOOD).read_bytes()
    (tmp_path / "b_truncated.avro").write_bytes(data[: len(data) // 2])
    (tmp_path / "c_garbage.avro").write_bytes(b"not an avro file at all")

    def corrupt_gzip(record):
        stamp = bytearray(record["cutoutScience"]["stampData"])
        stamp[20:60] = b"\x00" * 40
        record["cutoutScience"]["stampData"] = bytes(stamp)

    def wrong_size(record):
        big = np.zeros((70, 70), dtype=np.float32)

        record["cutoutDifference"]["stampData"] = gzip.compress(_fits_bytes(big))

    def mostly_nan(record):
        record["cutoutTemplate"]["stampData"] = gzip.compress(_fits_bytes(np.full((63, 63), np.nan, dtype=np.float32)))

    _rewrite(alerts_dir / GOOD, tmp_path / "d_corrupt_gzip.avro", corrupt_gzip)
    _rewrite(alerts_dir / GOOD, tmp_path / "e_wrong_size.avro", wrong_size)
    _rewrite(alerts_dir / GOOD, tmp_path / "f_nan.avro", mostly_nan)
    cutouts, table = read_alerts(tmp_path)
    assert len(table) == 6
    usable = dict(zip(table["file"], table["usable"], strict=True))
    reasons = dict(zip(table["file"], table["reason"], strict=True))
    assert usable["a_good.avro"] and not any(usable[f] for f in usable if f != "a_good.avro")
    assert reasons["b_truncated.avro"].startswith("unreadable-avro")
    assert reasons["c_garbage.avro"].startswith("unreadable-avro")
    assert reasons["d_corrupt_gzip.avro"].startswith("corrupt-cutout:cutoutScience")
    assert reasons["e_wrong_size.avro"].startswith("wrong-size:cutoutDifference")
    assert reasons["f_nan.avro"].startswith("too-many-nan:cutoutTemplate")
    assert np.isnan(cutouts[~np.asarray(table["usable"])]).all()

    torch.manual_seed(0)
    scored = score_alerts(build_model(width=4, dense=16), tmp_path)
    assert np.isfinite(scored["score"][scored["usable"]]).all()
    assert np.isnan(scored["score"][~scored["usable"]]).all()


def _fits_bytes(data: np.ndarray) -> bytes:
    import io

    from astropy.io import fits

    buffer = io.BytesIO()
    fits.PrimaryHDU(data).writeto(buffer)
    return buffer.getvalue()


@pytest.mark.realdata
def test_score_alerts_with_spearman(alerts_dir):
    torch.manual_seed(0)
    table = score_alerts(build_model(width=4, dense=16), alerts_dir)
    assert np.all((table["score"] >= 0) & (table["score"] <= 1))
    assert table.meta["n_spearman_drb"] == 3 and table.meta["n_spearman_rb"] == 16
    assert -1.0 <= table.meta["spearman_rb"] <= 1.0
    figure = triplet_gallery(read_alerts(alerts_dir)[0], table["score"], n_show=3, titles=list(table["objectId"]))
    assert len(figure.axes) == 18


def test_spearman_needs_three_finite_pairs():
    rho, n = spearman_with(np.array([0.1, 0.2, np.nan, 0.4]), np.array([1.0, np.nan, 3.0, 2.0]))
    assert np.isnan(rho) and n == 2
    rho, n = spearman_with(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 2.0, 3.0, 5.0]))
    assert rho == pytest.approx(1.0) and n == 4
    assert np.isnan(spearman_with(np.ones(4), np.arange(4.0))[0])


def test_missing_directory():
    with pytest.raises(FileNotFoundError):
        read_alerts("/nonexistent/alerts")


def test_trainer_gallery_hook():
    rng = np.random.default_rng(0)
    figure = realbogus_gallery({"cutout": rng.normal(size=(6, 3, 15, 15))}, rng.random(6), np.arange(6) % 2, "held out")
    assert len(figure.axes) == 18
