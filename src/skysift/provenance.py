"""Provenance stamp carried by every skysift data product.

Every product (HDF5 or FITS) records where it came from: the skysift version and
git commit that made it, a hash of the configuration, the sha256 of every input
file, the Snakemake rule, the creation time, the versions of the key packages and
the random seed. :class:`Provenance` is that block; :mod:`skysift.io` writes it
into HDF5 root attributes and FITS header keywords.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skysift._version import __version__

__all__ = [
    "PROVENANCE_PACKAGES",
    "Provenance",
    "config_hash",
    "git_commit",
    "package_versions",
    "sha256_file",
]

#: Packages whose versions every provenance block records.
PROVENANCE_PACKAGES: tuple[str, ...] = ("numpy", "astropy", "torch", "h5py", "snakemake")

_CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 digest of a file's bytes.

    Parameters
    ----------
    path : str or path-like
        File to hash.

    Returns
    -------
    str
        64 hexadecimal characters.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cannot checksum, no such file")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """Return a sha256 of a configuration that ignores key order.

    The configuration is serialised as canonical JSON (sorted keys, no
    whitespace), so two configurations with the same content hash the same
    whatever order their YAML listed the keys in.

    Parameters
    ----------
    config : mapping
        JSON-serialisable configuration.

    Returns
    -------
    str
        64 hexadecimal characters.
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def git_commit(repo_dir: str | os.PathLike[str] | None = None) -> str:
    """Return the git commit of the skysift source tree.

    Parameters
    ----------
    repo_dir : str or path-like, optional
        Directory inside the repository; defaults to this module's directory.

    Returns
    -------
    str
        The full commit hash, suffixed with ``-dirty`` when tracked files have
        uncommitted changes, or ``"unknown"`` outside a git checkout (for
        example an installed wheel). ``SKYSIFT_GIT_COMMIT`` overrides it, for
        runs from an exported source tree.
    """
    override = os.environ.get("SKYSIFT_GIT_COMMIT")
    if override:
        return override
    where = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if status else commit


def package_versions(packages: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Return installed versions of ``packages`` without importing them.

    Reading distribution metadata avoids importing torch (seconds) just to stamp
    a product. A package that is not installed is recorded as ``"not-installed"``.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not-installed"
    return versions


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Provenance:
    """The fixed provenance block of a skysift product.

    Attributes
    ----------
    skysift_version : str
        Version of the skysift package that wrote the product.
    git_commit : str
        Commit of the skysift source tree (``-dirty`` if modified, or ``unknown``).
    config_hash : str
        :func:`config_hash` of the configuration the product was made with.
    inputs : dict of str to str
        Input file path to its sha256.
    rule : str
        Snakemake rule (or CLI command) that made the product.
    created_utc : str
        Creation time, UTC, ISO 8601 (``YYYY-MM-DDTHH:MM:SSZ``).
    software : dict of str to str
        Versions of numpy, astropy, torch, h5py and snakemake.
    seed : int or None
        Random seed, or None for deterministic products.
    """

    skysift_version: str
    git_commit: str
    config_hash: str
    inputs: dict[str, str]
    rule: str
    created_utc: str
    software: dict[str, str]
    seed: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def collect(
        cls,
        *,
        rule: str,
        inputs: Iterable[str | os.PathLike[str]] = (),
        config: Mapping[str, Any] | None = None,
        config_digest: str | None = None,
        seed: int | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Provenance:
        """Build the block for a product being written now.

        Parameters
        ----------
        rule : str
            Rule or command name.
        inputs : iterable of path
            Input files; each is checksummed (they must exist).
        config : mapping, optional
            Configuration to hash. Give this or ``config_digest``.
        config_digest : str, optional
            A precomputed :func:`config_hash` (what the workflow passes to the CLI).
        seed : int, optional
            Random seed used.
        extra : mapping, optional
            Further string key/values to record (for example the data release).
        """
        if config is not None and config_digest is not None:
            raise ValueError("give either config or config_digest, not both")
        digest = config_digest if config_digest is not None else config_hash(config or {})
        return cls(
            skysift_version=__version__,
            git_commit=git_commit(),
            config_hash=digest,
            inputs={str(p): sha256_file(p) for p in inputs},
            rule=rule,
            created_utc=_utc_now(),
            software=package_versions(),
            seed=None if seed is None else int(seed),
            extra=dict(extra or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the block as a JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, block: Mapping[str, Any]) -> Provenance:
        """Rebuild a block from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If a required field is missing.
        """
        required = [name for name in cls.__dataclass_fields__ if name not in ("seed", "extra")]
        missing = [name for name in required if name not in block]
        if missing:
            raise ValueError(f"provenance block lacks field(s) {', '.join(missing)}")
        values = {name: block[name] for name in cls.__dataclass_fields__ if name in block}
        values["inputs"] = dict(values["inputs"])
        values["software"] = dict(values["software"])
        values["extra"] = dict(values.get("extra") or {})
        seed = values.get("seed")
        values["seed"] = None if seed is None or seed == "" else int(seed)
        return cls(**values)

    # HDF5 ------------------------------------------------------------------
    def to_hdf5_attrs(self) -> dict[str, str | int]:
        """Flatten the block into HDF5 root attributes named ``provenance.*``.

        Scalars are stored as they are; the input and software maps as JSON
        strings, so the set of attribute names is fixed whatever the inputs.
        """
        return {
            "provenance.skysift_version": self.skysift_version,
            "provenance.git_commit": self.git_commit,
            "provenance.config_hash": self.config_hash,
            "provenance.inputs": json.dumps(self.inputs, sort_keys=True),
            "provenance.rule": self.rule,
            "provenance.created_utc": self.created_utc,
            "provenance.software": json.dumps(self.software, sort_keys=True),
            "provenance.seed": -1 if self.seed is None else self.seed,
            "provenance.extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_hdf5_attrs(cls, attrs: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`to_hdf5_attrs`."""
        prefix = "provenance."
        flat = {k[len(prefix) :]: v for k, v in attrs.items() if k.startswith(prefix)}
        if not flat:
            raise ValueError("no provenance.* attributes: not a skysift product")
        block: dict[str, Any] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in flat.items()}
        for key in ("inputs", "software", "extra"):
            if key in block:
                block[key] = json.loads(block[key])
        if "seed" in block:
            seed = int(block["seed"])
            block["seed"] = None if seed < 0 else seed
        return cls.from_dict(block)

    # FITS ------------------------------------------------------------------
    def to_fits_cards(self) -> list[tuple[str, Any, str]]:
        """Return FITS header cards ``(keyword, value, comment)``.

        Keywords are standard 8-character names prefixed ``SS``; inputs become
        numbered ``SSINPnnn`` (path) and ``SSSHAnnn`` (sha256) pairs. Long paths
        use the FITS ``CONTINUE`` convention, which astropy handles.
        """
        cards: list[tuple[str, Any, str]] = [
            ("SSVERS", self.skysift_version, "skysift version"),
            ("SSCOMMIT", self.git_commit, "skysift git commit"),
            ("SSCFGHSH", self.config_hash, "sha256 of the canonical config"),
            ("SSRULE", self.rule, "rule that made this product"),
            ("SSDATE", self.created_utc, "creation time (UTC, ISO 8601)"),
            ("SSSEED", -1 if self.seed is None else self.seed, "random seed (-1: none)"),
            ("SSNINP", len(self.inputs), "number of input files"),
        ]
        for index, (path, digest) in enumerate(sorted(self.inputs.items()), start=1):
            cards.append((f"SSINP{index:03d}", path, "input file"))
            cards.append((f"SSSHA{index:03d}", digest, "input sha256"))
        for index, (name, version) in enumerate(sorted(self.software.items()), start=1):
            cards.append((f"SSSWN{index:03d}", name, "software package"))
            cards.append((f"SSSWV{index:03d}", version, "software version"))
        cards.append(("SSEXTRA", json.dumps(self.extra, sort_keys=True), "extra provenance (JSON)"))
        # A comment that does not fit beside its value would be truncated with a
        # warning; such cards go without one (the keyword names say enough).
        return [(k, v, c if len(str(v)) + len(c) <= 60 else "") for k, v, c in cards]

    @classmethod
    def from_fits_header(cls, header: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`to_fits_cards`.

        Raises
        ------
        ValueError
            If the header carries no skysift provenance keywords.
        """
        if "SSVERS" not in header:
            raise ValueError("header has no SSVERS keyword: not a skysift product")
        n_inputs = int(header.get("SSNINP", 0))
        inputs = {header[f"SSINP{i:03d}"]: header[f"SSSHA{i:03d}"] for i in range(1, n_inputs + 1)}
        software = {}
        index = 1
        while f"SSSWN{index:03d}" in header:
            software[header[f"SSSWN{index:03d}"]] = header[f"SSSWV{index:03d}"]
            index += 1
        seed = int(header.get("SSSEED", -1))
        return cls(
            skysift_version=header["SSVERS"],
            git_commit=header["SSCOMMIT"],
            config_hash=header["SSCFGHSH"],
            inputs=inputs,
            rule=header["SSRULE"],
            created_utc=header["SSDATE"],
            software=software,
            seed=None if seed < 0 else seed,
            extra=json.loads(header.get("SSEXTRA", "{}")),
        )
