from __future__ import annotations

import copy

import pytest

from skysift.config import derive_seed, load_config, load_schema, read_pairs_table, read_yaml, validate_config
from skysift.errors import ConfigError


@pytest.fixture
def schema(repo_root):
    return load_schema(repo_root / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def demo_config(repo_root):
    return read_yaml(repo_root / "config" / "config.yaml")


def test_demo_config_is_valid_and_gets_defaults(schema, demo_config, repo_root):
    validated = validate_config(demo_config, schema, base_dir=repo_root)
    assert validated["simulate"]["pairs"]["pixel_scale"] == 0.26  # filled from the schema default
    assert validated["inputs"]["pairs_table"] is None
    assert "pixel_scale" not in demo_config["simulate"]["pairs"]  # the input is not modified


def test_every_schema_property_is_documented(schema, repo_root):
    readme = (repo_root / "config" / "README.md").read_text()

    def walk(node, prefix):
        for name, sub in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            assert "description" in sub or sub.get("type") == "object", f"{key} has no description in the schema"
            assert f"`{key}`" in readme, f"config/README.md does not document `{key}`"
            walk(sub, f"{key}.")

    walk(schema, "")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(seed="abc"), r"config key 'seed': expected integer, got 'abc'"),
        (lambda c: c.update(bogus=1), r"unknown config key 'bogus'"),
        (lambda c: c["simulate"]["pairs"].update(n_stars=-1), r"'simulate.pairs.n_stars': expected a value >= 0"),
        (lambda c: c["simulate"]["pairs"].update(fwhm=2), r"unknown config key 'simulate.pairs.fwhm'"),
        (lambda c: c.pop("seed"), r"missing required config key\(s\) seed"),
        (lambda c: c.update(run_name="a b"), r"'run_name': 'a b' does not match"),
        (lambda c: c["inputs"].update(pairs_table="no/such.tsv"), r"'inputs.pairs_table': file 'no/such.tsv'.*does not exist"),
        (lambda c: c.update(results_dir="../outside"), r"'results_dir'.*outside the project directory"),
    ],
    ids=["wrong-type", "unknown-key", "range", "nested-unknown", "missing", "pattern", "missing-file", "escape"],
)
def test_bad_config_names_the_key(schema, demo_config, repo_root, mutate, message):
    config = copy.deepcopy(demo_config)
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, schema, base_dir=repo_root)


def test_yaml_is_loaded_safely(tmp_path, repo_root):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        load_config(evil, repo_root / "workflow" / "schemas" / "config.schema.yaml")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such configuration file"):
        read_yaml(tmp_path / "nope.yaml")


def test_pairs_table_noise_and_weight_columns(tmp_path):
    from skysift.releases import pair_fingerprint

    for name in ("s.fits", "r.fits", "s_err.fits", "r_wht.fits"):
        (tmp_path / name).write_bytes(b"x")
    table = tmp_path / "pairs.tsv"
    table.write_text("pair_id\tscience\treference\tscience_noise\treference_weight\np1\ts.fits\tr.fits\ts_err.fits\tr_wht.fits\n")
    [pair] = read_pairs_table(table, base_dir=tmp_path)
    assert pair["science_noise"] == (tmp_path / "s_err.fits").resolve()
    assert pair["reference_weight"] == (tmp_path / "r_wht.fits").resolve()
    assert pair["reference_noise"] is None and pair["science_weight"] is None
    table.write_text("pair_id\tscience\treference\tscience_noise\tscience_weight\np1\ts.fits\tr.fits\ts_err.fits\tr_wht.fits\n")
    with pytest.raises(ConfigError, match="row 2: science_noise and science_weight both given"):
        read_pairs_table(table, base_dir=tmp_path)
    # Pairs without noise maps keep the fingerprint they had before the columns existed (no rerun).
    old_style = {"science_sha256": "a" * 64, "reference_sha256": "b" * 64}
    assert pair_fingerprint(old_style) == f"{'a' * 64}:{'b' * 64}:-:-"
    assert pair_fingerprint({**old_style, "science_noise_sha256": "c" * 64}).endswith(f":{'c' * 64}:-:-:-")


def test_pairs_table(tmp_path):
    (tmp_path / "s.fits").write_bytes(b"x")
    (tmp_path / "r.fits").write_bytes(b"x")
    table = tmp_path / "pairs.tsv"
    table.write_text("# comment\npair_id\tscience\treference\tscience_mask\np1\ts.fits\tr.fits\t\n")
    [pair] = read_pairs_table(table, base_dir=tmp_path)
    assert pair["pair_id"] == "p1" and pair["science"] == (tmp_path / "s.fits").resolve()
    assert pair["science_mask"] is None and pair["reference_mask"] is None
    table.write_text("pair_id\tscience\treference\np1\ts.fits\tmissing.fits\n")
    with pytest.raises(ConfigError, match="row 2: reference file 'missing.fits'"):
        read_pairs_table(table, base_dir=tmp_path)
    table.write_text("pair_id\tscience\np1\ts.fits\n")
    with pytest.raises(ConfigError, match="lacks column"):
        read_pairs_table(table, base_dir=tmp_path)
    table.write_text("pair_id\tscience\treference\np1\ts.fits\tr.fits\np1\ts.fits\tr.fits\n")
    with pytest.raises(ConfigError, match="duplicate pair_id 'p1'"):
        read_pairs_table(table, base_dir=tmp_path)


def test_derive_seed_is_stable_and_independent():
    assert derive_seed(42, "simulate", "sim00") == derive_seed(42, "simulate", "sim00")
    seeds = {derive_seed(42, "simulate", f"sim{i:02d}") for i in range(100)}
    assert len(seeds) == 100
    assert derive_seed(42, "a") != derive_seed(43, "a")
    assert 0 <= derive_seed(1, "x") < 2**31


def test_pairs_table_paths_resolve_as_pathlib_does(tmp_path):
    # read_pairs_table resolves directories once each (a table of 20,000 files); its paths
    # must be what Path.resolve() gives, through directory and file links, '..' and absolute paths.
    data = tmp_path / "data"
    (data / "p1").mkdir(parents=True)
    for name in ("science.fits", "reference.fits"):
        (data / "p1" / name).write_bytes(b"x")
    (tmp_path / "linked").symlink_to(data)
    (data / "p1" / "science_link.fits").symlink_to(data / "p1" / "science.fits")
    (data / "p1" / "dangling.fits").symlink_to(data / "p1" / "nothing.fits")
    values = ["data/p1/science.fits", "linked/p1/reference.fits", "data/p1/science_link.fits",
              "linked/../data/p1/science.fits", str(data / "p1" / "reference.fits")]
    table = tmp_path / "pairs.tsv"
    table.write_text("pair_id\tscience\treference\n" + "".join(
        f"p{index}\t{value}\tdata/p1/reference.fits\n" for index, value in enumerate(values)))
    rows = read_pairs_table(table, base_dir=tmp_path)
    assert [row["science"] for row in rows] == [(tmp_path / value).resolve() for value in values]
    for missing in ("data/p1/nothing.fits", "data/p1/dangling.fits", "data/p1", "nowhere/p1/science.fits"):
        table.write_text(f"pair_id\tscience\treference\np1\t{missing}\tdata/p1/reference.fits\n")
        with pytest.raises(ConfigError, match="does not exist"):
            read_pairs_table(table, base_dir=tmp_path)
    [row] = read_pairs_table(table, base_dir=tmp_path, require_files=False)
    assert row["science"] == (tmp_path / "nowhere/p1/science.fits").resolve()
