"""W3C PROV export and archive bundles on a small real run of the simulate stage."""

from __future__ import annotations

import base64
import json

import pytest
from prov.model import ProvDocument

from skysift.archive import create_bundle, verify_bundle
from skysift.cli import main
from skysift.config import load_schema
from skysift.provdoc import build_prov_document, ivoa_view, write_prov_documents
from skysift.provenance import sha256_file


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    pair = results / "simulate" / "sim00"
    assert main(["simulate", "pair", "--outdir", str(pair), "--seed", "2", "--image-size", "96", "--n-stars", "20",
                 "--n-transients", "2", "--n-saturated", "0", "--edge-margin", "10", "--rule", "simulate_pair"]) == 0
    products = [pair / name for name in ("reference.fits", "science.fits", "truth.h5", "stars.ecsv")]
    # A Snakemake-style job record for one output: base64 of the path as file name.
    metadata = results / "metadata"
    metadata.mkdir()
    record = {"rule": "simulate_pair", "job_hash": 42, "starttime": 1.8e9, "endtime": 1.8e9 + 3, "params": ["--seed 2"]}
    for product in products:
        name = base64.b64encode(str(product.as_posix()).encode(), altchars=b"+_").decode()
        (metadata / name).write_text(json.dumps(record))
    assert main(["provenance", "summary", *map(str, products), "--outdir", str(results / "provenance"),
                 "--run-name", "t"]) == 0
    return results, products, metadata


def test_prov_document_round_trips_and_lists_every_product(run):
    results, products, metadata = run
    document = build_prov_document(products, metadata_dir=metadata, run_name="t")
    text = document.serialize(format="json")
    assert ProvDocument.deserialize(content=text, format="json") == document
    records = json.loads(text)
    locations = {attrs["prov:location"]: attrs["skysift:sha256"] for attrs in records["entity"].values()}
    for product in products:
        assert locations[product.as_posix()] == sha256_file(product)
    # one job made all four products, with Snakemake's times
    [activity] = records["activity"].values()
    assert activity["skysift:rule"] == "simulate_pair"
    assert activity["prov:startTime"].startswith("2027-01-15")
    assert len(records["wasGeneratedBy"]) == 4
    assert any(a.get("prov:type") == "prov:SoftwareAgent" for a in records["agent"].values())
    assert "prov:PROV" not in document.get_provn() and document.get_provn().startswith("document")


def test_ivoa_view_has_parameters_with_units(run, repo_root):
    _, products, metadata = run
    schema = load_schema(repo_root / "workflow" / "schemas" / "config.schema.yaml")
    view = ivoa_view(build_prov_document(products, metadata_dir=metadata), schema, {"simulate": {"pairs": {"image_size": 96}}})
    [description] = view["activityDescriptions"]
    parameters = {p["name"]: p for p in description["parameters"]}
    assert parameters["simulate.pairs.image_size"]["unit"] == "pix"
    [activity] = view["activities"]
    values = {p["name"]: p["value"] for p in activity["parameters"]}
    assert values["simulate.pairs.image_size"] == 96
    assert len(view["wasGeneratedBy"]) == 4


def test_bundle_verifies_and_names_an_altered_byte(run, tmp_path, capsys):
    results, products, metadata = run
    write_prov_documents(products, results / "provenance", schema={}, config={}, metadata_dir=metadata)
    bundle = tmp_path / "bundle"
    assert main(["archive", "create", "--results", str(results), "--bundle", str(bundle)]) == 0
    assert (bundle / "provenance" / "prov.json").is_file()
    assert main(["archive", "verify", str(bundle)]) == 0
    target = bundle / "products" / "simulate" / "sim00" / "truth.h5"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["archive", "verify", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert "altered (sha256 differs): products/simulate/sim00/truth.h5" in err
    (bundle / "products" / "simulate" / "sim00" / "stars.ecsv").unlink()
    report = verify_bundle(bundle)
    assert report.missing == ["products/simulate/sim00/stars.ecsv"] and not report.ok


def test_bundle_refuses_to_overwrite_and_needs_products(run, tmp_path):
    results, products, _ = run
    bundle = create_bundle(tmp_path / "b", results_dir=results, products=products)
    with pytest.raises(FileExistsError, match="bundle exists"):
        create_bundle(bundle, results_dir=results, products=products)
    with pytest.raises(FileNotFoundError, match="gone.h5"):
        create_bundle(tmp_path / "c", results_dir=results, products=[results / "gone.h5"])
    assert not (tmp_path / "c").exists()


def test_metrics_table(tmp_path):
    from skysift.report import write_metrics_table

    for task, auc in (("lens", 0.9), ("transit", 0.95)):
        (tmp_path / task / "evaluation").mkdir(parents=True)
        (tmp_path / task / "evaluation" / "metrics.json").write_text(json.dumps({"task": task, "split": "test", "roc_auc": auc}))
    html = write_metrics_table(sorted(tmp_path.glob("*/evaluation/metrics.json")), tmp_path / "m.html").read_text()
    assert html.count("<tr>") == 3 and "0.95" in html and "<td>lens</td>" in html
