"""One declaration per stage parameter: schema, flags, README and library defaults agree."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from skysift.cli import build_parser
from skysift.cli._flags import FLAGS
from skysift.config import load_schema, options_sections, read_yaml, render_parameter_tables
from skysift.errors import ConfigError
from skysift.options import default_of, option_params, section_schema

SRC = Path(__file__).resolve().parents[1] / "src" / "skysift"


@pytest.fixture(scope="module")
def sections():
    return options_sections(SRC.parents[1] / "workflow" / "schemas" / "config.schema.yaml")


def _subparser(parser, *names):
    for name in names:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def test_schema_sections_are_generated_from_the_options_classes(repo_root, sections):
    raw = read_yaml(repo_root / "workflow" / "schemas" / "config.schema.yaml")
    schema = load_schema(repo_root / "workflow" / "schemas" / "config.schema.yaml")
    assert set(sections) == {
        "simulate.pairs", "diffim", "transit", "realbogus", "lens", "lens_validation", "gw", "dask", "train.<task>"
    }
    for section, classes in sections.items():
        path = ["$defs", "train"] if section == "train.<task>" else [p for part in section.split(".") for p in ("properties", part)]
        raw_node, node = raw, schema
        for part in path:
            raw_node, node = raw_node[part], node[part]
        assert "properties" not in raw_node, f"{section}: keys declared in the schema file as well as in the class"
        expected = {}
        for cls in classes:
            expected.update(section_schema(cls))
        assert node["properties"] == expected and node["additionalProperties"] is False


def test_schema_defaults_equal_the_library_defaults(sections):
    for classes in sections.values():
        for cls in classes:
            instance = cls()
            for item, spec in option_params(cls):
                if spec.config:
                    assert section_schema(cls)[item.name]["default"] == getattr(instance, item.name), item.name


def test_changing_a_default_changes_schema_flags_and_readme(monkeypatch):
    from skysift.diffim.options import DiffimOptions

    field = DiffimOptions.__dataclass_fields__["threshold"]
    monkeypatch.setattr(field, "default", 6.5)
    assert section_schema(DiffimOptions)["threshold"]["default"] == 6.5
    parser = _subparser(build_parser(), "diffim")
    assert parser.parse_args(["--science", "s", "--reference", "r", "--outdir", "o"]).threshold == 6.5
    assert "| `diffim.threshold` | number > 0 (sigma) | 6.5 |" in render_parameter_tables(None)


def test_readme_parameter_tables_are_current(repo_root):
    text = (repo_root / "config" / "README.md").read_text()
    assert "<!-- options: diffim -->" in text
    assert render_parameter_tables(text) == text, "run: skysift config docs config/README.md"


def test_flag_defaults_equal_option_defaults(sections):
    parser = build_parser()
    cases = {
        ("diffim",): (["--science", "s", "--reference", "r", "--outdir", "o"], ["diffim"]),
        ("transit", "simulate"): (["--out", "o", "--seed", "1"], ["transit", "dask"]),
        ("lens", "simulate"): (["--out", "o", "--seed", "1"], ["lens"]),
        ("gw", "simulate"): (["--out", "o", "--seed", "1"], ["gw", "dask"]),
        ("realbogus", "simulate"): (["--pair", "s", "r", "--out", "o", "--seed", "1"], ["realbogus", "diffim", "dask"]),
        ("simulate", "pair"): (["--outdir", "o", "--seed", "1"], ["simulate.pairs"]),
    }
    for names, (required, used) in cases.items():
        arguments = parser.parse_args([*names, *required])
        for section in used:
            for cls in sections[section]:
                for item, spec in option_params(cls):
                    if spec.cli:
                        assert getattr(arguments, item.name) == default_of(item), (names, item.name)


def test_flags_are_named_as_config_keys():
    parser = build_parser()
    options = {a.dest for a in _subparser(parser, "gw", "search")._actions}
    assert "search_step" in options and "step" not in options
    options = {a.dest for a in _subparser(parser, "cutouts")._actions}
    assert "cutout_size" in options and "size" not in options
    options = {a.dest for a in _subparser(parser, "realbogus", "simulate")._actions}
    assert "n_injections_per_image" in options


def test_cli_declares_fewer_than_60_flags_by_hand():
    """Every flag comes from an options class or from FLAGS; no other add_argument call in cli/."""
    calls = []
    for path in (SRC / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                calls.append((path.name, node.lineno, ast.unparse(node.args[0]) if node.args else "?"))
    by_hand = [call for call in calls if call[0] != "_flags.py"]
    # _flags.py adds FLAGS entries and generated option flags; __init__ adds the three global flags.
    assert {c[2] for c in by_hand} == {"'--version'", "'--log-level'", "'--log-file'"}, by_hand
    assert len(FLAGS) + 3 < 60, len(FLAGS) + 3


def test_no_library_function_takes_rule_or_config_digest():
    """Provenance plumbing travels in a RunContext (skysift.context), not in science signatures."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name in ("context.py", "provenance.py") or "cli" in path.parts:
            continue  # the provenance record and the run context themselves
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {a.arg for a in (*node.args.args, *node.args.kwonlyargs)}
                plumbing = {"rule", "config_digest"} | (set() if path.name == "parallel.py" else {"client", "scheduler"})
                bad = names & plumbing
                if bad:
                    offenders.append(f"{path.relative_to(SRC)}:{node.name}({', '.join(sorted(bad))})")
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: __import__("skysift.diffim.options", fromlist=["x"]).DiffimOptions(psf_grid=-2), r"diffim.psf_grid: expected a value >= 1"),
        (lambda: __import__("skysift.diffim.options", fromlist=["x"]).DiffimOptions(psf_size=20), r"expected an odd integer"),
        (lambda: __import__("skysift.gw.options", fromlist=["x"]).GWOptions(mass_min=60.0), r"mass_max .* must exceed mass_min"),
        (lambda: __import__("skysift.realbogus.options", fromlist=["x"]).RealbogusOptions(cutout_size=32), r"odd"),
        (lambda: __import__("skysift.train.config", fromlist=["x"]).TrainConfig(scheduler="linear"), r"expected one of cosine, constant"),
    ],
)
def test_options_check_their_values(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_options_are_frozen_dataclasses_with_declared_fields(sections):
    for classes in sections.values():
        for cls in classes:
            assert dataclasses.is_dataclass(cls)
            assert option_params(cls)  # raises if a field is not declared with param()
