"""Real detector strain: GWOSC/LOSC HDF5 files and frame files, one per detector.

GWOSC HDF5 layout (https://gwosc.org/archive/dataset/, the LOSC ``V1``/``V2``
files and their GWOSC successors)
-----------------------------------------------------------------------------
``strain/Strain``
    The strain samples (float64), attributes ``Xstart`` (GPS start) and
    ``Xspacing`` (sample spacing, s). Gaps in the data are NaN.
``meta/GPSstart``, ``meta/Duration``, ``meta/Detector``
    GPS start (s), duration (s) and the detector (``H1``, ``L1``, ``V1``).
``quality/simple/DQmask``
    One integer a second; bit ``k`` set means the second passes the test
    named ``quality/simple/DQShortnames[k]`` (``DATA``, ``CBC_CAT1``,
    ``CBC_CAT2``, ...; :data:`DQ_BITS` for the usual ones).
``quality/injections/Injmask``
    Likewise for hardware injections (bit set = *no* injection of that kind).

Frame files (``.gwf``) are read through LALSuite's ``lalframe`` where it is
importable; the strain channel is the one channel named ``<IFO>:...STRAIN``
(``H1:LOSC-STRAIN``, ``H1:GWOSC-4KHZ_R1_STRAIN``), the data-quality channel
``<IFO>:...DQMASK`` where present.

The detectors are checked to share GPS start, duration and sample rate; the
strain is split into the stretches where every detector has data (finite
samples) and passes the required data-quality bits, and is resampled to the
search's rate with an anti-aliasing low-pass (:func:`resample`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
from scipy import signal

from skysift.errors import InputDataError
from skysift.gw.series import Strain
from skysift.log import get_logger

__all__ = [
    "DQ_BITS",
    "DetectorStrain",
    "is_gwosc_file",
    "parse_strain_arguments",
    "read_detector_strain",
    "read_frame",
    "read_gwosc",
    "read_real_strain",
    "resample",
]

log = get_logger(__name__)

#: The usual ``DQmask`` bits of GWOSC 4 kHz strain: bit -> (short name, meaning of a set bit).
#: The file's own ``DQShortnames``/``DQDescriptions`` are used where present.
DQ_BITS: dict[int, tuple[str, str]] = {
    0: ("DATA", "data present"),
    1: ("CBC_CAT1", "passes the CBC category-1 data-quality test"),
    2: ("CBC_CAT2", "passes the CBC category-2 data-quality test"),
    3: ("CBC_CAT3", "passes the CBC category-3 data-quality test"),
    4: ("BURST_CAT1", "passes the burst category-1 data-quality test"),
    5: ("BURST_CAT2", "passes the burst category-2 data-quality test"),
    6: ("BURST_CAT3", "passes the burst category-3 data-quality test"),
}

#: Data-quality bits a second must pass to be searched by default (the CBC searches' category 1).
DEFAULT_REQUIRED_DQ = ("DATA", "CBC_CAT1")


@dataclass(frozen=True)
class DetectorStrain:
    """Strain of one detector as read from a file, before any conditioning.

    Attributes
    ----------
    detector : str
        ``H1``, ``L1``, ...
    data : ndarray
        Strain samples (NaN where the file has no data).
    start_time, delta_t : float
        GPS time of the first sample and sample spacing (s).
    dq_mask : ndarray
        Data-quality bitmask, one value per ``dq_spacing`` seconds from
        ``start_time`` (empty where the file has none).
    dq_names : tuple of str
        Short name of each bit of ``dq_mask`` (bit ``k`` is ``dq_names[k]``).
    dq_spacing : float
        Seconds per ``dq_mask`` value (1 for GWOSC files).
    path : Path
        The file it came from (for messages).
    """

    detector: str
    data: np.ndarray
    start_time: float
    delta_t: float
    dq_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    dq_names: tuple[str, ...] = ()
    dq_spacing: float = 1.0
    path: Path = Path()

    @property
    def sample_rate(self) -> float:
        return 1.0 / self.delta_t

    @property
    def duration(self) -> float:
        return self.data.size * self.delta_t

    def passes(self, required: Sequence[str]) -> np.ndarray:
        """Per-sample boolean: finite and every ``required`` DQ bit set.

        Raises
        ------
        InputDataError
            If a required bit is not among the file's ``dq_names``.
        """
        good = np.isfinite(self.data)
        if not required or self.dq_mask.size == 0:
            return good
        missing = [name for name in required if name not in self.dq_names]
        if missing:
            raise InputDataError(f"{self.path}: no data-quality bit named {missing} (the file has {list(self.dq_names)})")
        bits = sum(1 << self.dq_names.index(name) for name in required)
        per_second = (self.dq_mask.astype(np.int64) & bits) == bits
        second = np.minimum((np.arange(self.data.size) * self.delta_t / self.dq_spacing).astype(int), per_second.size - 1)
        return good & per_second[second]


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def is_gwosc_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a GWOSC/LOSC HDF5 strain file (has ``strain/Strain``)."""
    try:
        with h5py.File(path, "r") as handle:
            return "strain/Strain" in handle
    except OSError:
        return False


def read_gwosc(path: str | os.PathLike[str], detector: str | None = None) -> DetectorStrain:
    """Read one GWOSC/LOSC HDF5 strain file.

    Parameters
    ----------
    path : path
    detector : str, optional
        Expected detector; checked against ``meta/Detector`` where present.

    Raises
    ------
    InputDataError
        If the file is unreadable, lacks ``strain/Strain`` or a sample
        spacing, or holds another detector's data.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            if "strain/Strain" not in handle:
                raise InputDataError(f"{path}: not a GWOSC strain file (no strain/Strain dataset)")
            dataset = handle["strain/Strain"]
            if "Xspacing" not in dataset.attrs:
                raise InputDataError(f"{path}: strain/Strain has no Xspacing attribute (the sample spacing)")
            delta_t = float(dataset.attrs["Xspacing"])
            if "meta/GPSstart" in handle:
                start = float(handle["meta/GPSstart"][()])
            elif "Xstart" in dataset.attrs:
                start = float(dataset.attrs["Xstart"])
            else:
                raise InputDataError(f"{path}: no GPS start (neither meta/GPSstart nor strain/Strain's Xstart)")
            data = dataset[()].astype(np.float64)
            name = _text(handle["meta/Detector"][()]) if "meta/Detector" in handle else None
            if "meta/Duration" in handle and abs(float(handle["meta/Duration"][()]) - data.size * delta_t) > delta_t:
                raise InputDataError(f"{path}: meta/Duration {float(handle['meta/Duration'][()]):g} s disagrees with the "
                                     f"{data.size} samples at {1 / delta_t:g} Hz")
            dq_mask, dq_names, dq_spacing = np.zeros(0, dtype=np.uint32), (), 1.0
            if "quality/simple/DQmask" in handle:
                mask = handle["quality/simple/DQmask"]
                dq_mask = mask[()].astype(np.uint32)
                dq_spacing = float(mask.attrs.get("Xspacing", 1.0))
                if "quality/simple/DQShortnames" in handle:
                    dq_names = tuple(_text(v) for v in handle["quality/simple/DQShortnames"][()])
                else:
                    dq_names = tuple(DQ_BITS[k][0] for k in range(len(DQ_BITS)))
    except OSError as error:
        raise InputDataError(f"{path}: not a readable HDF5 file ({error})") from error
    if not delta_t > 0:
        raise InputDataError(f"{path}: sample spacing Xspacing = {delta_t} is not positive")
    if name is None:
        name = detector or _detector_from_name(path)
    if detector is not None and name != detector:
        raise InputDataError(f"{path}: holds {name} strain, given as {detector}")
    return DetectorStrain(name, data, start, delta_t, dq_mask, dq_names, dq_spacing, path)


def _detector_from_name(path: Path) -> str:
    """``H1`` from a GWOSC file name ``H-H1_LOSC_4_V2-1126259446-32.hdf5``."""
    match = re.match(r"^[A-Z]-([A-Z][0-9])_", path.name)
    if match is None:
        raise InputDataError(f"{path}: cannot tell the detector (no meta/Detector, name not like H-H1_...); give it as H1=FILE")
    return match.group(1)


def read_frame(path: str | os.PathLike[str], detector: str | None = None, channel: str | None = None) -> DetectorStrain:
    """Read the strain (and DQ mask) channel of a frame file through ``lalframe``.

    Parameters
    ----------
    path : path
    detector : str, optional
        Detector prefix of the channels (default: the file name's, ``H-H1_...``).
    channel : str, optional
        Strain channel; default the one channel ``<detector>:...STRAIN``.

    Raises
    ------
    InputDataError
        If LALSuite's ``lalframe`` is not importable, or the channel is absent
        or ambiguous.
    """
    path = Path(path)
    try:
        import lalframe
        from lalframe import frread
    except ImportError as error:
        raise InputDataError(f"{path}: reading frame files needs LALSuite's lalframe (pip install lalsuite)") from error
    detector = detector or _detector_from_name(path)
    try:
        frfile = lalframe.FrameUFrFileOpen(str(path), "r")
        toc = lalframe.FrameUFrTOCRead(frfile)
        names = [lalframe.FrameUFrTOCQueryAdcName(toc, i) for i in range(lalframe.FrameUFrTOCQueryAdcN(toc))]
        names += [lalframe.FrameUFrTOCQueryProcName(toc, i) for i in range(lalframe.FrameUFrTOCQueryProcN(toc))]
        names += [lalframe.FrameUFrTOCQuerySimName(toc, i) for i in range(lalframe.FrameUFrTOCQuerySimN(toc))]
    except RuntimeError as error:
        raise InputDataError(f"{path}: not a readable frame file ({error})") from error
    ours = [name for name in names if name.startswith(f"{detector}:")]
    if channel is None:
        strain_channels = [name for name in ours if name.upper().endswith("STRAIN")]
        if len(strain_channels) != 1:
            raise InputDataError(f"{path}: expected one {detector}:...STRAIN channel, found {strain_channels or names}")
        channel = strain_channels[0]
    elif channel not in names:
        raise InputDataError(f"{path}: no channel {channel} (the file has {names})")
    series = frread.read_timeseries(str(path), channel)
    data = np.asarray(series.data.data, dtype=np.float64)
    dq_mask, dq_names = np.zeros(0, dtype=np.uint32), ()
    dq_channels = [name for name in ours if name.upper().endswith("DQMASK")]
    if len(dq_channels) == 1:
        dq = frread.read_timeseries(str(path), dq_channels[0])
        dq_mask = np.asarray(dq.data.data).astype(np.uint32)
        dq_names = tuple(DQ_BITS[k][0] for k in range(len(DQ_BITS)))
        dq_spacing = float(dq.deltaT)
    else:
        dq_spacing = 1.0
    return DetectorStrain(detector, data, float(series.epoch), float(series.deltaT), dq_mask, dq_names, dq_spacing, path)


def resample(data: np.ndarray, sample_rate: float, new_rate: float, *, attenuation: float = 100.0, transition: float = 0.1) -> np.ndarray:
    """Resample along the last axis with a zero-phase anti-aliasing FIR.

    Polyphase resampling by the rational factor ``new_rate / sample_rate``
    (:func:`scipy.signal.resample_poly`) with a Kaiser-window low-pass whose
    stop band starts at the lower of the two Nyquist frequencies and whose pass
    band ends ``transition`` (a fraction of that Nyquist) below it: nothing
    above the new Nyquist folds back in band by more than ``-attenuation`` dB.
    The filter is symmetric and centred, so there is no delay; its length
    (about 0.1 s at 4096 -> 2048 Hz) corrupts as much at either end.

    Parameters
    ----------
    data : ndarray
    sample_rate, new_rate : float
        Hz; their ratio must be a ratio of small integers.
    attenuation : float
        Stop-band attenuation (dB).
    transition : float
        Transition width as a fraction of the lower Nyquist frequency.
    """
    if new_rate == sample_rate:
        return np.asarray(data, dtype=np.float64)
    ratio = Fraction(new_rate / sample_rate).limit_denominator(1000)
    if abs(float(ratio) * sample_rate - new_rate) > 1e-6 * new_rate:
        raise ValueError(f"cannot resample {sample_rate} Hz to {new_rate} Hz by a ratio of small integers")
    up, down = ratio.numerator, ratio.denominator
    nyquist = min(sample_rate, new_rate) / 2.0
    design_rate = sample_rate * up
    numtaps, beta = signal.kaiserord(attenuation, transition * nyquist / (design_rate / 2.0))
    numtaps |= 1  # odd: a centred, zero-phase filter
    cutoff = nyquist * (1.0 - transition / 2.0)
    fir = signal.firwin(numtaps, cutoff, window=("kaiser", beta), fs=design_rate)
    return signal.resample_poly(np.asarray(data, dtype=np.float64), up, down, axis=-1, window=fir)


def parse_strain_arguments(items: Sequence[str]) -> list[tuple[str | None, Path]]:
    """``[DET=]FILE`` command-line items as (detector or None, path)."""
    parsed = []
    for item in items:
        detector, sep, path = str(item).partition("=")
        if sep and re.fullmatch(r"[A-Z][0-9]", detector):
            parsed.append((detector, Path(path)))
        else:
            parsed.append((None, Path(item)))
    return parsed


def read_detector_strain(files: Sequence[tuple[str | None, str | os.PathLike[str]]] | Mapping[str, str | os.PathLike[str]]) -> list[DetectorStrain]:
    """Read one GWOSC HDF5 or frame file per detector (a ``.gwf`` suffix means a frame file).

    Raises
    ------
    InputDataError
        If a detector appears twice or the files disagree in GPS start,
        duration or sample rate (the message names both files).
    """
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    strains = []
    for detector, path in items:
        path = Path(path)
        if not path.is_file():
            raise InputDataError(f"{path}: no such strain file")
        strains.append(read_frame(path, detector) if path.suffix == ".gwf" else read_gwosc(path, detector))
    seen: dict[str, Path] = {}
    for strain in strains:
        if strain.detector in seen:
            raise InputDataError(f"{strain.path} and {seen[strain.detector]}: both hold {strain.detector} strain")
        seen[strain.detector] = strain.path
    first = strains[0]
    for other in strains[1:]:
        if other.delta_t != first.delta_t:
            raise InputDataError(f"{first.path} ({first.sample_rate:g} Hz) and {other.path} ({other.sample_rate:g} Hz): sample rates differ")
        if abs(other.start_time - first.start_time) > first.delta_t / 2 or other.data.size != first.data.size:
            raise InputDataError(f"{first.path} (GPS {first.start_time:.3f} + {first.duration:g} s) and {other.path} "
                                 f"(GPS {other.start_time:.3f} + {other.duration:g} s): the detectors' data do not cover the same time")
    return strains


def read_real_strain(
    files: Sequence[tuple[str | None, str | os.PathLike[str]]] | Mapping[str, str | os.PathLike[str]],
    *,
    sample_rate: float = 2048.0,
    required_dq: Sequence[str] = DEFAULT_REQUIRED_DQ,
    min_duration: float = 16.0,
) -> list[Strain]:
    """Real strain of several detectors as searchable segments at ``sample_rate``.

    The detectors' files are read (:func:`read_detector_strain`), samples are
    kept where every detector has data and passes ``required_dq``, contiguous
    stretches of at least ``min_duration`` s become segments, and each is
    resampled (:func:`resample`).

    Parameters
    ----------
    files : sequence of (detector or None, path), or mapping detector -> path
        One file per detector; ``None`` takes the detector from the file.
    sample_rate : float
        The search's rate (Hz).
    required_dq : sequence of str
        DQ bits every searched second must pass (default ``DATA`` and
        ``CBC_CAT1``; empty to ignore data quality).
    min_duration : float
        Shorter good stretches are dropped (s).

    Raises
    ------
    InputDataError
        If no stretch is long enough (the message gives the good seconds per file).
    """
    strains = read_detector_strain(files)
    good = np.logical_and.reduce([s.passes(required_dq) for s in strains])
    first = strains[0]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], good.astype(np.int8), [0]])))
    segments = []
    for lo, hi in zip(edges[::2], edges[1::2], strict=True):
        if (hi - lo) * first.delta_t < min_duration:
            continue
        rows = [resample(s.data[lo:hi], s.sample_rate, sample_rate) for s in strains]
        segments.append(Strain(np.stack(rows), first.start_time + lo * first.delta_t, 1.0 / sample_rate, tuple(s.detector for s in strains)))
    if not segments:
        report = ", ".join(f"{s.path.name}: {s.passes(required_dq).sum() * s.delta_t:.0f} s good" for s in strains)
        raise InputDataError(f"no stretch of {min_duration:g} s where every detector has data passing {list(required_dq)} ({report})")
    log.info("real strain: %s, %d segment(s), %.0f s at %g Hz", ", ".join(s.detector for s in strains), len(segments),
             sum(s.duration for s in segments), sample_rate)
    return segments
