from __future__ import annotations

import hashlib
import re

import pytest
from astropy.io import fits

from skysift.provenance import PROVENANCE_PACKAGES, Provenance, config_hash, git_commit, sha256_file


def test_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 5000  # more than one read chunk
    path.write_bytes(payload)
    assert sha256_file(path) == hashlib.sha256(payload).hexdigest()


def test_sha256_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.fits"):
        sha256_file(tmp_path / "nothere.fits")


def test_config_hash_ignores_key_order_but_not_values():
    a = {"seed": 1, "simulate": {"x": 1, "y": [1, 2]}}
    b = {"simulate": {"y": [1, 2], "x": 1}, "seed": 1}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "seed": 2})
    assert re.fullmatch(r"[0-9a-f]{64}", config_hash(a))


def test_collect_fills_every_field(provenance):
    assert provenance.rule == "test_rule"
    assert provenance.seed == 7
    [(path, digest)] = provenance.inputs.items()
    assert path.endswith("input.txt") and digest == sha256_file(path)
    assert set(provenance.software) == set(PROVENANCE_PACKAGES)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", provenance.created_utc)
    assert provenance.git_commit  # a commit hash, or "unknown" outside git


def test_git_commit_of_this_checkout_or_override(monkeypatch):
    commit = git_commit()
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    monkeypatch.setenv("SKYSIFT_GIT_COMMIT", "abc123")
    assert git_commit() == "abc123"


def test_hdf5_attrs_round_trip(provenance):
    assert Provenance.from_hdf5_attrs(provenance.to_hdf5_attrs()) == provenance


def test_fits_cards_round_trip_with_long_paths(provenance):
    long_input = {"/a/very/long/path/" + "x" * 120 + ".fits": "f" * 64}
    block = Provenance(**{**provenance.to_dict(), "inputs": long_input, "seed": None})
    header = fits.Header()
    for keyword, value, comment in block.to_fits_cards():
        header[keyword] = (value, comment)
    # Through a real file, so CONTINUE cards are exercised.
    text = header.tostring()
    assert Provenance.from_fits_header(fits.Header.fromstring(text)) == block


def test_from_dict_reports_missing_fields():
    with pytest.raises(ValueError, match="config_hash"):
        Provenance.from_dict({"skysift_version": "1", "git_commit": "x", "inputs": {}, "rule": "r",
                              "created_utc": "t", "software": {}})
