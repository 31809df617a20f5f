"""ZTF Avro alert packets: read the cutout triplets and score them.

A ZTF alert (schema: ZwickyTransientFacility/ztf-avro-alert) carries the
candidate's measurements (``candidate``: ``ra``, ``dec``, ``magpsf``, ``rb``
and, from schema 3.3, ``drb``, braai's deep real/bogus score) and three
gzip-compressed FITS stamps ``cutoutScience``, ``cutoutTemplate`` and
``cutoutDifference`` (``stampData``), 63 x 63 pixels, smaller where the
candidate lies within 31 pixels of the CCD-quadrant edge.

Bad input never stops a batch and never yields a silent wrong score:

* an unreadable, corrupt or truncated Avro file gives one row with
  ``usable = False`` and the reason (records read before the damage are kept);
* a stamp that cannot be decompressed or parsed, is missing, is larger than
  63 x 63, or is mostly NaN makes the row unusable (cutout all NaN, score NaN);
* a smaller stamp (CCD edge) is padded on the side of the edge, found from
  the candidate's ``xpos``/``ypos``, and flagged ``padded``;
* NaN pixels in an otherwise good stamp are replaced by the stamp's median and
  flagged ``nan-filled``.

The triplets are returned raw, channels ``science, reference (template),
difference`` as in every skysift cutout; the model normalises them.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skysift.context import RunContext, resolve_context
from skysift.io import write_table
from skysift.log import get_logger

__all__ = ["ALERT_STAMP_SIZE", "STAMP_FIELDS", "read_alerts", "run_score_alerts", "score_alerts", "spearman_with"]

log = get_logger(__name__)

ALERT_STAMP_SIZE = 63
#: Avro fields of the three stamps, in skysift channel order.
STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
#: A stamp with more NaN pixels than this fraction is unusable.
MAX_NAN_FRACTION = 0.5
_CANDIDATE_FIELDS = ("ra", "dec", "magpsf", "sigmapsf", "rb", "drb", "xpos", "ypos", "fid", "jd")


class _StampError(ValueError):
    """A stamp that cannot be used; the message is the reason."""


def _decode_stamp(cutout: Any, name: str) -> np.ndarray:
    if cutout is None or cutout.get("stampData") is None:
        raise _StampError(f"missing-cutout:{name}")
    raw = cutout["stampData"]
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # alert stamps lack SIMPLE / have non-standard cards
            with fits.open(io.BytesIO(raw), ignore_missing_simple=True, memmap=False) as hdul:
                data = hdul[0].data
                data = None if data is None else np.array(data, dtype=np.float32)
    except (OSError, EOFError, zlib.error, ValueError, TypeError, IndexError) as exc:
        raise _StampError(f"corrupt-cutout:{name} ({type(exc).__name__})") from exc
    if data is None or data.ndim != 2 or data.size == 0:
        raise _StampError(f"corrupt-cutout:{name} (no 2-D image)")
    return data


def _pad_to_size(stamp: np.ndarray, xpos: float, ypos: float, size: int, name: str) -> tuple[np.ndarray, bool]:
    """Pad a stamp cut at a CCD edge back to ``size``, NaN on the edge's side."""
    ny, nx = stamp.shape
    if ny > size or nx > size:
        raise _StampError(f"wrong-size:{name} {ny}x{nx}")
    if (ny, nx) == (size, size):
        return stamp, False
    half = size // 2

    def widths(n: int, position: float) -> tuple[int, int]:
        missing = size - n
        if not np.isfinite(position):
            return missing // 2, missing - missing // 2
        # ZTF positions are 1-based; a stamp is short on the low side when the
        # candidate is within half a stamp of pixel 1.
        return (missing, 0) if position - 1.0 < half else (0, missing)

    return np.pad(stamp, (widths(ny, ypos), widths(nx, xpos)), constant_values=np.nan), True


def _triplet(record: dict[str, Any], size: int) -> tuple[np.ndarray, list[str]]:
    candidate = record.get("candidate") or {}
    xpos = float(candidate.get("xpos") or np.nan)
    ypos = float(candidate.get("ypos") or np.nan)
    flags: list[str] = []
    channels = []
    for name in STAMP_FIELDS:
        stamp, padded = _pad_to_size(_decode_stamp(record.get(name), name), xpos, ypos, size, name)
        if padded and "padded" not in flags:
            flags.append("padded")
        finite = np.isfinite(stamp)
        if finite.mean() < 1.0 - MAX_NAN_FRACTION:
            raise _StampError(f"too-many-nan:{name} ({100 * (1 - finite.mean()):.0f}% NaN)")
        values = stamp[finite]
        if values.max() == values.min():
            raise _StampError(f"blank-cutout:{name}")
        if not finite.all():
            stamp = np.where(finite, stamp, np.median(values)).astype(np.float32)
            if "nan-filled" not in flags:
                flags.append("nan-filled")
        channels.append(stamp)
    return np.stack(channels), flags


def _records(path: Path) -> Iterator[tuple[dict[str, Any] | None, str]]:
    """Yield (record, "") per alert, then (None, reason) if the file breaks off."""
    import fastavro

    try:
        with path.open("rb") as stream:
            reader = fastavro.reader(stream)
            for record in reader:
                yield record, ""
    except Exception as exc:  # fastavro raises many types on corrupt input
        yield None, f"unreadable-avro ({type(exc).__name__}: {str(exc)[:80]})"


def _row(path: Path, record: dict[str, Any] | None) -> dict[str, Any]:
    candidate = (record or {}).get("candidate") or {}
    row: dict[str, Any] = {
        "file": path.name,
        "objectId": str((record or {}).get("objectId") or ""),
        "candid": int((record or {}).get("candid") or candidate.get("candid") or -1),
        "schemavsn": str((record or {}).get("schemavsn") or ""),
        "isdiffpos": str(candidate.get("isdiffpos") or ""),
    }
    for name in _CANDIDATE_FIELDS:
        value = candidate.get(name)
        row[name] = float(value) if value is not None else np.nan
    return row


def read_alerts(directory: str | os.PathLike[str], *, size: int = ALERT_STAMP_SIZE) -> tuple[np.ndarray, Table]:
    """Read every ``*.avro`` alert packet in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Directory of Avro files (one or more alerts each), read in name order.
    size : int
        Stamp side to return (63 for ZTF).

    Returns
    -------
    cutouts : numpy.ndarray
        ``(N, 3, size, size)`` float32 raw triplets (science, template,
        difference); all NaN in unusable rows.
    table : astropy.table.Table
        One row per alert (or per unreadable file): ``file``, ``objectId``,
        ``candid``, ``schemavsn``, ``isdiffpos``, ``ra``, ``dec``, ``magpsf``,
        ``sigmapsf``, ``rb``, ``drb`` (NaN where the packet predates it),
        ``xpos``, ``ypos``, ``fid``, ``jd``, ``usable`` (bool), ``flag``
        (comma-separated: ``padded``, ``nan-filled``) and ``reason`` (why a row
        is unusable).

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such alert directory")
    rows: list[dict[str, Any]] = []
    cutouts: list[np.ndarray] = []
    blank = np.full((3, size, size), np.nan, dtype=np.float32)
    for path in sorted(directory.glob("*.avro")):
        for record, failure in _records(path):
            row = _row(path, record)
            row["usable"], row["flag"], row["reason"] = False, "", failure
            triplet = blank
            if record is not None:
                try:
                    triplet, flags = _triplet(record, size)
                    row["usable"], row["flag"] = True, ",".join(flags)
                except _StampError as exc:
                    row["reason"] = str(exc)
            if not row["usable"]:
                log.warning("%s: alert %s unusable: %s", path, row["candid"], row["reason"])
            rows.append(row)
            cutouts.append(triplet)
    columns = ["file", "objectId", "candid", "schemavsn", "isdiffpos", *_CANDIDATE_FIELDS, "usable", "flag", "reason"]
    table = Table(rows=[[row[c] for c in columns] for row in rows], names=columns) if rows else Table(names=columns)
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("magpsf", "mag"), ("sigmapsf", "mag"), ("xpos", "pix"), ("ypos", "pix")):
        table[name].unit = unit
    array = np.stack(cutouts) if cutouts else np.zeros((0, 3, size, size), dtype=np.float32)
    return array, table


def spearman_with(scores: np.ndarray, other: np.ndarray) -> tuple[float, int]:
    """Spearman rank correlation over the entries where both are finite.

    Returns ``(rho, n)``; rho is NaN with fewer than 3 such entries or when
    either side is constant there (the coefficient is undefined).
    """
    from scipy.stats import spearmanr

    scores, other = np.asarray(scores, dtype=float), np.asarray(other, dtype=float)
    both = np.isfinite(scores) & np.isfinite(other)
    n = int(both.sum())
    if n < 3 or np.ptp(scores[both]) == 0 or np.ptp(other[both]) == 0:
        return float("nan"), n
    return float(spearmanr(scores[both], other[both]).statistic), n


def score_alerts(model: Any, directory: str | os.PathLike[str], *, batch_size: int = 256) -> Table:
    """Score the alerts of ``directory`` with a real/bogus model.

    Parameters
    ----------
    model : torch.nn.Module or str or path-like
        A model following the trainer contract (raw ``(N, 3, 63, 63)`` in,
        logits out) or a trained-model directory for
        :func:`skysift.train.trainer.load_model`.
    directory : str or path-like
        Alert packets (see :func:`read_alerts`).
    batch_size : int
        Cutouts per forward pass.

    Returns
    -------
    astropy.table.Table
        :func:`read_alerts`'s table plus ``score`` (sigmoid of the logit, NaN
        where ``usable`` is False) beside ZTF's ``rb`` and ``drb``;
        ``meta["spearman_drb"]``, ``meta["n_spearman_drb"]`` (and the same for
        ``rb``) hold the rank correlation over alerts where both are finite.
    """
    import torch

    if isinstance(model, (str, os.PathLike)):
        from skysift.train.trainer import load_model

        model, _ = load_model(model, task="realbogus")
    cutouts, table = read_alerts(directory)
    scores = np.full(len(table), np.nan)
    usable = np.flatnonzero(np.asarray(table["usable"], dtype=bool)) if len(table) else np.zeros(0, int)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(usable), batch_size):
            index = usable[start : start + batch_size]
            logits = model(torch.from_numpy(np.ascontiguousarray(cutouts[index])))
            # float64: a float32 sigmoid rounds every logit above ~17 to exactly 1 and ties them.
            scores[index] = torch.sigmoid(logits.double()).numpy()
    table["score"] = scores
    for name in ("drb", "rb"):
        rho, n = spearman_with(scores, table[name]) if len(table) else (float("nan"), 0)
        table.meta[f"spearman_{name}"] = rho
        table.meta[f"n_spearman_{name}"] = n
    log.info("%s: scored %d of %d alerts; Spearman with drb %.3f (n=%d)", directory, len(usable), len(table),
             table.meta["spearman_drb"], table.meta["n_spearman_drb"])
    return table


def run_score_alerts(
    model_dir: str | os.PathLike[str],
    alerts_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    context: RunContext | None = None,
) -> Path:
    """Score a directory of alerts with a trained model and write the ECSV table (with provenance)."""
    alerts_dir = Path(alerts_dir)
    table = score_alerts(model_dir, alerts_dir)
    inputs = sorted(alerts_dir.glob("*.avro")) + sorted(p for p in Path(model_dir).glob("*") if p.is_file())
    provenance = resolve_context(context, "score_ztf_alerts").provenance(inputs=inputs)
    return write_table(table, out_path, provenance=provenance)
