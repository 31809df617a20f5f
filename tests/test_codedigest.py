"""Code digests per rule: the import graph decides which jobs an edit reruns."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skysift.codedigest import CodeDigestCache, code_closure, code_digest, source_signature

SRC = Path(__file__).resolve().parents[1] / "src"

#: The entry points of the workflow's rules (workflow/rules/*.smk, `code_version`).
RULES = {
    "simulate_pair": ("skysift.cli.stages:_simulate_pair",),
    "diffim": ("skysift.cli.stages:_diffim",),
    "cutouts": ("skysift.cli.stages:_cutouts",),
    "transit_training_set": ("skysift.cli.stages:_transit_simulate",),
    "lens_training_set": ("skysift.cli.stages:_lens_simulate",),
    "gw_training_set": ("skysift.cli.stages:_gw_simulate",),
    "realbogus_training_set": ("skysift.cli.stages:_realbogus_simulate",),
    "train_lens": ("skysift.cli.training:_train", "skysift.lens.task"),
    "train_transit": ("skysift.cli.training:_train", "skysift.transit.task"),
    "provenance_summary": ("skysift.cli.records:_provenance_summary",),
}
TRAINING_SETS = {"transit_training_set", "lens_training_set", "gw_training_set", "realbogus_training_set"}


@pytest.fixture
def src(tmp_path) -> Path:
    copy = tmp_path / "src"
    shutil.copytree(SRC / "skysift", copy / "skysift", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def digests(src: Path) -> dict[str, str]:
    return {rule: code_digest(entries, src) for rule, entries in RULES.items()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def rerun(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {rule for rule in before if before[rule] != after[rule]}


def test_editing_priors_reruns_the_four_training_sets(src):
    before = digests(src)
    edit(src / "skysift" / "simulate" / "priors.py", "import numpy as np", "import numpy as np\n_EDITED = 1")
    changed = rerun(before, digests(src))
    assert TRAINING_SETS <= changed
    assert "diffim" not in changed and "provenance_summary" not in changed


def test_help_texts_docstrings_and_comments_rerun_nothing(src):
    before = digests(src)
    edit(src / "skysift" / "cli" / "_flags.py", '"help": "output file"', '"help": "the output file, reworded"')
    edit(src / "skysift" / "cli" / "stages.py", 'help="ZOGY image differencing', 'help="ZOGY proper image differencing')
    edit(src / "skysift" / "simulate" / "priors.py", '"""', '"""Reworded. ', )
    edit(src / "skysift" / "diffim" / "zogy.py", "import numpy as np", "import numpy as np  # a comment")
    edit(src / "skysift" / "diffim" / "options.py", '"Detection threshold on abs(Scorr)."', '"Threshold on |Scorr|."')
    assert rerun(before, digests(src)) == set()


def test_code_edits_rerun_exactly_the_jobs_that_run_them(src):
    before = digests(src)
    edit(src / "skysift" / "diffim" / "zogy.py", "import numpy as np", "import numpy as np\n_EDITED = 1")
    assert rerun(before, digests(src)) == {"diffim", "realbogus_training_set"}  # injection runs ZOGY too
    before = digests(src)
    edit(src / "skysift" / "lens" / "model.py", "import torch", "import torch\n_EDITED = 1")
    changed = rerun(before, digests(src))
    assert "train_lens" in changed and "train_transit" not in changed
    before = digests(src)
    edit(src / "skysift" / "diffim" / "options.py", "threshold: float = param(5.0", "threshold: float = param(5.5")
    assert "diffim" in rerun(before, digests(src))  # a default is code


def test_closure_follows_lazy_imports_and_registry_strings():
    closure = code_closure(["skysift.cli.training:_train", "skysift.lens.task"], SRC)
    assert "skysift.train.trainer" in closure  # imported inside the handler
    assert "skysift.lens.model" in closure  # named as "skysift.lens.model:build_model" in the task
    assert "skysift.cli._flags:run_context" in closure and "skysift.cli._flags" not in closure
    with pytest.raises(FileNotFoundError, match="nosuch"):
        code_closure(["skysift.nosuch"], SRC)


def test_code_digest_cache_holds_until_a_source_file_changes(src, tmp_path, monkeypatch):
    path = tmp_path / "state" / "code_digests.json"
    entries = RULES["diffim"]
    first = CodeDigestCache(path, src)
    assert first.digest(entries) == code_digest(entries, src)
    # A later start reads the digest: no module is parsed while the sources are unchanged.
    monkeypatch.setattr("skysift.codedigest.code_digest", lambda *args: pytest.fail("digest computed again"))
    assert CodeDigestCache(path, src).digest(entries) == first.digest(entries)
    monkeypatch.undo()
    signature = source_signature(src)
    edit(src / "skysift" / "diffim" / "zogy.py", "import numpy as np", "import numpy as np\n_EDITED = 1")
    assert source_signature(src) != signature
    edited = CodeDigestCache(path, src)
    assert edited.digest(entries) == code_digest(entries, src) != first.digest(entries)
    path.write_text("{not json")  # a damaged cache costs computing again, nothing else
    assert CodeDigestCache(path, src).digest(entries) == edited.digest(entries)
