from __future__ import annotations

import json

import pytest

from skysift.cli import build_parser, main
from skysift.io import read_fits_image, read_product


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            yield from action.choices.items()


def test_every_command_has_help(capsys):
    parser = build_parser()
    stack = [("skysift", parser)]
    seen = 0
    while stack:
        name, current = stack.pop()
        assert current.description, f"`{name}` has no description for --help"
        for child_name, child in _subcommands(current):
            stack.append((f"{name} {child_name}", child))
        seen += 1
    assert seen >= 6
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "pair", "--help"])
    assert exit_info.value.code == 0
    assert "science image only" in capsys.readouterr().out


def test_simulate_pair_and_provenance_show(tmp_path, capsys):
    outdir = tmp_path / "pair"
    status = main(["simulate", "pair", "--outdir", str(outdir), "--seed", "3", "--image-size", "128",
                   "--n-stars", "30", "--n-transients", "4", "--rule", "simulate_pair", "--config-hash", "f" * 64])
    assert status == 0
    science = read_fits_image(outdir / "science.fits", require_wcs=True)
    assert science.data.shape == (128, 128)
    truth = read_product(outdir / "truth.h5")
    assert len(truth) == 4 and truth.arrays["science_stamp"].shape == (4, 25, 25)
    assert truth.provenance.seed == 3 and truth.provenance.config_hash == "f" * 64
    assert (outdir / "preview.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["provenance", "show", str(outdir / "science.fits")]) == 0
    block = json.loads(capsys.readouterr().out)
    assert block["rule"] == "simulate_pair" and block["extra"]["pair_id"] == "sim"
    assert json.loads(block["extra"]["options.simulate.pairs"])["n_stars"] == 30  # the options object, whole


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["provenance", "show", str(tmp_path / "absent.h5")]) == 2
    err = capsys.readouterr().err
    assert "absent.h5" in err and "Traceback" not in err


def test_config_validate_command(repo_root, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["config", "validate", "config/config.yaml"]) == 0
    assert "valid" in capsys.readouterr().out


def test_provenance_summary(tmp_path, capsys):
    outdir = tmp_path / "pair"
    main(["simulate", "pair", "--outdir", str(outdir), "--seed", "1", "--image-size", "64", "--n-stars", "5",
          "--n-transients", "1", "--n-saturated", "0", "--edge-margin", "5"])
    products = [outdir / "science.fits", outdir / "truth.h5", outdir / "stars.ecsv"]
    assert main(["provenance", "summary", *map(str, products), "--outdir", str(tmp_path),
                 "--run-name", "t"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [e["path"] for e in summary["products"]] == sorted(map(str, products))
    # The workflow lists a run's products in a file (more than a command line holds); both ways mix.
    listing = tmp_path / "products.txt"
    listing.write_text("".join(f"{path}\n" for path in products[1:]))
    assert main(["provenance", "summary", str(products[0]), f"@{listing}",
                 "--outdir", str(tmp_path / "listed"), "--run-name", "t"]) == 0
    listed = json.loads((tmp_path / "listed" / "summary.json").read_text())
    assert listed["products"] == summary["products"]
    assert main(["provenance", "summary", "--outdir", str(tmp_path / "none")]) == 2
    assert "no products: give product files or @FILE" in capsys.readouterr().err
    assert all(len(e["sha256"]) == 64 for e in summary["products"])
    assert "truth.h5" in (tmp_path / "summary.html").read_text()
