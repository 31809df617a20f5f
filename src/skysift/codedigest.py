"""Digests of the code a workflow job runs, from the import graph, blind to comments and docstrings.

Snakemake reruns a job when its parameters change but cannot see the Python
modules its command imports. Each rule therefore carries :func:`code_digest`
of its entry points as a parameter:

* an entry is a module (``"skysift.lens.task"``) or one function of a module
  (``"skysift.cli.stages:_diffim"``, the handler a rule's command runs);
* the digest covers the entries and, transitively, every ``skysift`` module
  they import, at module level or inside functions (lazy imports count), and
  every module named in a string such as ``"skysift.lens.model:build_model"``
  (task registries name their models so);
* inside :mod:`skysift.cli`, which holds only plumbing, an imported function
  counts alone (with the functions of its module it calls), so the help texts
  of the parser are not code a product depends on;
* each module counts by its abstract syntax tree without docstrings, and
  without the descriptions of declared parameters (``param(default,
  "description", ...)``): comments, docstrings and help texts change nothing.

So editing ``skysift/simulate/priors.py`` reruns every job that imports it
(the simulated pairs and the four training sets), editing a docstring or a
comment reruns nothing, and editing ``skysift/cli/_flags.py``'s help texts
reruns nothing.

Standard library only: the Snakefile imports this module.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CodeDigestCache", "code_closure", "code_digest", "source_signature"]

_MODULE_REFERENCE = re.compile(r"^(skysift(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_][A-Za-z0-9_]*)?$")
_PLUMBING = "skysift.cli"


def _module_file(name: str, src_root: Path) -> Path | None:
    base = src_root.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _strip_docstrings_and_descriptions(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "param" and len(node.args) >= 2:
            node.args[1] = ast.Constant("")
    return tree


@functools.lru_cache(maxsize=None)
def _parse(path: str, mtime_ns: int, size: int) -> ast.Module:
    """The module's tree, docstrings and parameter descriptions removed (cached per file version)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    return _strip_docstrings_and_descriptions(tree)  # type: ignore[return-value]


def _tree(path: Path) -> ast.Module:
    stat = path.stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


def _node_text(node: ast.AST) -> str:
    return ast.dump(node, include_attributes=False)


@functools.lru_cache(maxsize=None)
def _module_info(module: str, path: str, mtime_ns: int, size: int, src_root: str) -> tuple[str, frozenset]:
    tree = _parse(path, mtime_ns, size)
    return _node_text(tree), frozenset(_referenced_modules(tree, module, Path(src_root)))


def _referenced_modules(node: ast.AST, module: str, src_root: Path) -> set[tuple[str, str | None]]:
    """Modules (or, inside the CLI, functions) that ``node`` imports or names in strings."""
    found: set[tuple[str, str | None]] = set()
    own_file = _module_file(module, src_root)
    package = module if own_file is not None and own_file.name == "__init__.py" else module.rpartition(".")[0]
    for item in ast.walk(node):
        if isinstance(item, ast.Import):
            for alias in item.names:
                if alias.name.split(".")[0] == "skysift":
                    found.add((alias.name, None))
        elif isinstance(item, ast.ImportFrom):
            source = item.module or ""
            if item.level:
                parts = package.split(".")[: len(package.split(".")) - item.level + 1]
                source = ".".join([*parts, *([source] if source else [])])
            if source.split(".")[0] != "skysift":
                continue
            for alias in item.names:
                submodule = f"{source}.{alias.name}"
                if _module_file(submodule, src_root) is not None:
                    found.add((submodule, None))
                elif source == _PLUMBING or source.startswith(_PLUMBING + "."):
                    found.add((source, alias.name))
                else:
                    found.add((source, None))
        elif isinstance(item, ast.Constant) and isinstance(item.value, str):
            match = _MODULE_REFERENCE.match(item.value)
            if match and _module_file(match.group(1), src_root) is not None:
                found.add((match.group(1), None))
    return found


def _function_parts(tree: ast.Module, name: str) -> tuple[list[ast.AST], set[str]]:
    """A top-level function (or class) and the same-module functions it calls, and the names it uses."""
    definitions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    if name not in definitions:
        raise KeyError(name)
    chosen, queue, used = [], [name], set()
    seen = set()
    while queue:
        current = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        node = definitions[current]
        chosen.append(node)
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        used |= names
        queue += [n for n in names if n in definitions]
    return chosen, used


def _module_level_imports_of(tree: ast.Module, names: set[str]) -> ast.Module:
    """The module-level import statements that bind one of ``names``."""
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            aliases = [a for a in node.names if (a.asname or a.name.split(".")[0]) in names]
            if aliases:
                copy = ast.ImportFrom(module=node.module, names=aliases, level=node.level) \
                    if isinstance(node, ast.ImportFrom) else ast.Import(names=aliases)
                kept.append(copy)
    return ast.Module(body=kept, type_ignores=[])


def code_closure(entries: Iterable[str], src_root: str | os.PathLike[str]) -> dict[str, str]:
    """Every piece of code the entries run: ``"module"`` or ``"module:function"`` -> normalised AST text.

    Raises
    ------
    FileNotFoundError
        If an entry names no module under ``src_root``.
    """
    root = Path(src_root)
    queue: list[tuple[str, str | None]] = []
    for entry in entries:
        module, _, function = entry.partition(":")
        queue.append((module, function or None))
    pieces: dict[str, str] = {}
    while queue:
        module, function = queue.pop()
        key = f"{module}:{function}" if function else module
        if key in pieces:
            continue
        path = _module_file(module, root)
        if path is None:
            raise FileNotFoundError(f"{module}: no such module under {root}")
        tree = _tree(path)
        if function is None:
            stat = path.stat()
            pieces[key], referenced = _module_info(module, str(path), stat.st_mtime_ns, stat.st_size, str(root))
        else:
            try:
                nodes, used = _function_parts(tree, function)
            except KeyError:
                raise FileNotFoundError(f"{module}: defines no {function}") from None
            imports = _module_level_imports_of(tree, used)
            pieces[key] = "".join(_node_text(n) for n in nodes) + _node_text(imports)
            referenced = set()
            for node in [*nodes, imports]:
                referenced |= _referenced_modules(node, module, root)
        # Importing a module runs its packages' __init__ first (the CLI package's only wires parsers).
        parts = module.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if parent != _PLUMBING:
                queue.append((parent, None))
        queue += sorted(referenced, key=lambda item: (item[0], item[1] or ""))
    return pieces


def code_digest(entries: Iterable[str], src_root: str | os.PathLike[str]) -> str:
    """sha256 of :func:`code_closure` (a rule parameter: code edits rerun exactly the jobs that run them)."""
    digest = hashlib.sha256()
    for key, text in sorted(code_closure(entries, src_root).items()):
        digest.update(key.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def source_signature(src_root: str | os.PathLike[str]) -> str:
    """sha256 of the path, size, mtime and ctime of every Python file under ``src_root``.

    Any write to a source file changes its ctime (which no user tool sets
    back), so while this signature holds, every digest taken under it holds.
    """
    root = Path(src_root)
    entries = []
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as scan:
            for item in scan:
                if item.is_dir(follow_symlinks=False) and item.name != "__pycache__":
                    pending.append(Path(item.path))
                elif item.name.endswith(".py"):
                    stat = item.stat()
                    entries.append(f"{Path(item.path).relative_to(root).as_posix()}\0{stat.st_size}\0"
                                   f"{stat.st_mtime_ns}\0{stat.st_ctime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


class CodeDigestCache:
    """:func:`code_digest` of entries, remembered on disk while no source file changes.

    Parsing the import closures of a workflow's rules takes seconds, on every
    ``snakemake`` start and in every cluster job; a cached digest costs one
    ``stat`` per source file (:func:`source_signature`) for all entries.

    Parameters
    ----------
    path : path-like or None
        JSON file the digests live in (None: in memory only).
    src_root : path-like
        The source tree the digests are of (the directory holding ``skysift/``).
    """

    def __init__(self, path: str | os.PathLike[str] | None, src_root: str | os.PathLike[str]) -> None:
        self.path = Path(path) if path is not None else None
        self.src_root = Path(src_root)
        self.signature = source_signature(self.src_root)
        self._digests: dict[str, str] = {}
        if self.path is not None and self.path.is_file():
            try:
                stored = json.loads(self.path.read_text())
                if stored["signature"] == self.signature:
                    self._digests = {str(key): str(value) for key, value in stored["digests"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged cache only costs computing the digests again

    def digest(self, entries: Iterable[str]) -> str:
        """:func:`code_digest` of ``entries`` (computed, and saved, only when not cached)."""
        entries = tuple(entries)
        key = "\n".join(entries)
        if key not in self._digests:
            self._digests[key] = code_digest(entries, self.src_root)
            self._save()
        return self._digests[key]

    def _save(self) -> None:
        if self.path is None:
            return
        # Atomic: cluster jobs of one run may write at the same time (standard library only, as this module).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(descriptor, "w") as stream:
                json.dump({"signature": self.signature, "digests": self._digests}, stream)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
