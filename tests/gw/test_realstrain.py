"""Real strain in (GWOSC files, resampling) and real-noise robustness (edges, lines, gating, time slides)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from skysift.errors import InputDataError
from skysift.gw.background import false_alarm_rates, slide_offsets
from skysift.gw.conditioning import Gate, apply_gates, condition_strain, truncated_whitening_filter
from skysift.gw.gwosc import parse_strain_arguments, read_gwosc, read_real_strain, resample
from skysift.gw.search import excess_power_score, run_search, search_segment, trigger_table
from skysift.gw.series import Strain

EVENTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gw" / "gwosc_events"
#: GPS start of the 32 s files and the event's GPS time (MANIFEST.txt).
GWOSC_EVENTS = {"GW150914": (1126259446, 1126259462.44), "GW151226": (1135136334, 1135136350.65)}
DQ_NAMES = [b"DATA", b"CBC_CAT1", b"CBC_CAT2", b"CBC_CAT3", b"BURST_CAT1", b"BURST_CAT2", b"BURST_CAT3"]


def write_gwosc(path: Path, data: np.ndarray, *, start: int = 1000000000, rate: float = 4096.0, detector: str = "H1",
                dq: np.ndarray | None = None, spacing_attr: bool = True) -> Path:
    """A GWOSC-format strain file, as the LOSC V2 files lay it out."""
    duration = int(round(data.size / rate))
    with h5py.File(path, "w") as handle:
        strain = handle.create_dataset("strain/Strain", data=data)
        if spacing_attr:
            strain.attrs["Xspacing"] = 1.0 / rate
        strain.attrs["Xstart"] = start
        handle["meta/GPSstart"] = start
        handle["meta/Duration"] = duration
        handle["meta/Detector"] = detector.encode()
        handle["quality/simple/DQmask"] = np.full(duration, 127, dtype=np.uint32) if dq is None else dq
        handle["quality/simple/DQmask"].attrs["Xspacing"] = 1.0
        handle["quality/simple/DQShortnames"] = np.array(DQ_NAMES)
    return path


def white(rng: np.random.Generator, n: int, rows: int = 2) -> np.ndarray:
    return rng.standard_normal((rows, n))


def test_reader_fields_and_detector(tmp_path):
    rng = np.random.default_rng(0)
    path = write_gwosc(tmp_path / "H-H1_LOSC_4_V2-1000000000-32.hdf5", rng.standard_normal(32 * 4096))
    strain = read_gwosc(path)
    assert (strain.detector, strain.start_time, strain.sample_rate, strain.duration) == ("H1", 1000000000.0, 4096.0, 32.0)
    assert strain.dq_names[:2] == ("DATA", "CBC_CAT1") and strain.passes(["DATA", "CBC_CAT3"]).all()
    with pytest.raises(InputDataError, match="holds H1 strain, given as L1"):
        read_gwosc(path, "L1")
    with pytest.raises(InputDataError, match="no data-quality bit named"):
        strain.passes(["NOT_A_BIT"])
    no_spacing = write_gwosc(tmp_path / "bad.hdf5", np.zeros(4096 * 16), spacing_attr=False)
    with pytest.raises(InputDataError, match=r"bad\.hdf5: .*Xspacing"):
        read_gwosc(no_spacing)


def test_dq_bits_and_gaps_split_segments(tmp_path):
    rng = np.random.default_rng(1)
    n = 64 * 4096
    dq = np.full(64, 127, dtype=np.uint32)
    dq[30:32] &= ~np.uint32(0b10)  # CBC_CAT1 fails for two seconds
    h1 = rng.standard_normal(n)
    l1 = rng.standard_normal(n)
    l1[50 * 4096 : 51 * 4096] = np.nan  # a gap in L1 only
    files = [(None, write_gwosc(tmp_path / "H-H1_X-1-64.hdf5", h1, dq=dq)), ("L1", write_gwosc(tmp_path / "l1.hdf5", l1, detector="L1"))]
    segments = read_real_strain(files, sample_rate=2048.0, min_duration=10.0)
    spans = [(s.start_time - 1000000000, s.duration, s.detectors) for s in segments]
    assert spans == [(0.0, 30.0, ("H1", "L1")), (32.0, 18.0, ("H1", "L1")), (51.0, 13.0, ("H1", "L1"))]
    # Ignoring data quality leaves only the NaN gap.
    assert len(read_real_strain(files, sample_rate=2048.0, required_dq=(), min_duration=10.0)) == 2
    with pytest.raises(InputDataError, match=r"no stretch of 40 s .*H-H1_X-1-64\.hdf5: 62 s good"):
        read_real_strain(files, sample_rate=2048.0, min_duration=40.0)


def test_detectors_must_cover_the_same_time(tmp_path):
    h1 = write_gwosc(tmp_path / "h1.hdf5", np.zeros(16 * 4096))
    l1 = write_gwosc(tmp_path / "l1.hdf5", np.zeros(16 * 4096), detector="L1", start=1000000004)
    with pytest.raises(InputDataError, match=r"h1\.hdf5 .*l1\.hdf5 .*do not cover the same time"):
        read_real_strain([(None, h1), (None, l1)])
    twice = write_gwosc(tmp_path / "h1b.hdf5", np.zeros(16 * 4096))
    with pytest.raises(InputDataError, match="both hold H1"):
        read_real_strain([(None, h1), (None, twice)])
    with pytest.raises(InputDataError, match="no such strain file"):
        read_real_strain([(None, tmp_path / "absent.hdf5")])


def test_strain_arguments():
    assert parse_strain_arguments(["H1=a.hdf5", "b/c=d.hdf5", "x.gwf"]) == [("H1", Path("a.hdf5")), (None, Path("b/c=d.hdf5")), (None, Path("x.gwf"))]


def test_frame_files_through_lalframe(tmp_path):
    lal = pytest.importorskip("lal")
    lalframe = pytest.importorskip("lalframe")
    from skysift.gw.gwosc import read_frame

    data = np.random.default_rng(2).standard_normal(16 * 4096)
    series = lal.CreateREAL8TimeSeries("H1:GWOSC-4KHZ_R1_STRAIN", lal.LIGOTimeGPS(1000000000), 0.0, 1.0 / 4096, lal.StrainUnit, data.size)
    series.data.data[:] = data
    path = tmp_path / "H-H1_GWOSC_4KHZ_R1-1000000000-16.gwf"
    frame = lalframe.FrameNew(lal.LIGOTimeGPS(1000000000), 16.0, "skysift", 0, 0, 0)
    lalframe.FrameAddREAL8TimeSeriesProcData(frame, series)
    lalframe.FrameWrite(frame, str(path))
    strain = read_frame(path)
    assert (strain.detector, strain.start_time, strain.sample_rate) == ("H1", 1000000000.0, 4096.0)
    np.testing.assert_array_equal(strain.data, data)


def test_resampling_is_anti_aliased_and_zero_phase():
    rate, new = 4096.0, 2048.0
    t = np.arange(int(8 * rate)) / rate
    in_band = np.sin(2 * np.pi * 100.0 * t)
    above = np.sin(2 * np.pi * 1500.0 * t)  # would fold to 548 Hz
    out_band, out_above = resample(in_band, rate, new), resample(above, rate, new)
    inner = slice(int(0.5 * new), -int(0.5 * new))  # the FIR's reach at the ends
    t_new = np.arange(out_band.size) / new
    np.testing.assert_allclose(out_band[inner], np.sin(2 * np.pi * 100.0 * t_new)[inner], atol=1e-4)
    assert np.abs(out_above[inner]).max() < 1e-4  # 80 dB or more
    near_nyquist = resample(np.sin(2 * np.pi * 1070.0 * t), rate, new)  # just above the new Nyquist
    assert np.abs(near_nyquist[inner]).max() < 1e-4


def coloured(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Unit white noise under a toy seismic wall (red below 30 Hz) with a 60 Hz line 10^4 above it, two detectors."""
    frequencies = np.fft.rfftfreq(n, 1.0 / rate)
    asd = 1.0 + (30.0 / np.maximum(frequencies, 1.0)) ** 4
    spectrum = (rng.standard_normal((2, frequencies.size)) + 1j * rng.standard_normal((2, frequencies.size))) * asd
    data = np.fft.irfft(spectrum, n=n, axis=-1) * np.sqrt(n)  # E|X|^2 = 2: variance 1 / n before scaling
    t = np.arange(n) / rate
    return data + 3.0 * np.sin(2 * np.pi * 60.0 * t)


def test_whitened_spectrum_is_flat_at_a_line_and_unit_variance():
    rate, n = 2048.0, 32 * 2048
    strain = Strain(coloured(np.random.default_rng(3), n, rate), 0.0, 1.0 / rate)
    conditioned = condition_strain(strain)
    cut = int(conditioned.corrupt * rate)
    inner = conditioned.whitened.data[:, cut:-cut]
    assert np.allclose(inner.std(axis=1), 1.0, atol=0.05)
    power = np.abs(np.fft.rfft(inner, axis=1)) ** 2 / inner.shape[1]
    frequencies = np.fft.rfftfreq(inner.shape[1], 1.0 / rate)
    line, floor = (np.abs(frequencies - 60) < 2), (frequencies > 100) & (frequencies < 400)
    assert power[:, line].mean() < 1.5 * power[:, floor].mean()
    # The filter is strictly finite: as long as the Welch segment, symmetric.
    filters = truncated_whitening_filter(conditioned.psd, rate)
    assert filters.shape == (2, 4 * 2048 + 1) and np.allclose(filters, filters[:, ::-1])


def test_no_trigger_from_an_edge_discontinuity():
    """Data that start and end on a step (the wrap-around of a circular filter) give no event."""
    rate, n = 2048.0, 32 * 2048
    rng = np.random.default_rng(4)
    data = coloured(rng, n, rate) + np.linspace(-500, 500, n)  # a ramp: a 1000-sigma jump at the wrap
    data[:, : n // 64] += 300.0  # and a step half a second in
    conditioned = condition_strain(Strain(data, 0.0, 1.0 / rate), gate_threshold=0)
    found = search_segment(conditioned, excess_power_score, edge=2.5, threshold=-np.inf)
    events = found.time[~found.in_edge]
    assert events.min() >= 2.5 + 0.7 - 1e-9 and events.max() <= 32 - 2.5 - 0.3 + 1e-9
    # Whatever the edges do, the interior is noise: no event above 6 sigma of excess power.
    assert found.stat[~found.in_edge].max() < 6.0
    with pytest.raises(ValueError, match="shorter than the conditioning's corrupt ends"):
        search_segment(conditioned, excess_power_score, edge=1.0)


def test_autogating_removes_a_loud_glitch():
    rate, n = 2048.0, 32 * 2048
    rng = np.random.default_rng(5)
    data = coloured(rng, n, rate)
    t = np.arange(n) / rate
    glitch = 2000.0 * np.exp(-(((t - 12.0) / 0.01) ** 2)) * np.sin(2 * np.pi * 150.0 * t)
    data[0] += glitch
    conditioned = condition_strain(Strain(data, 100.0, 1.0 / rate))
    assert len(conditioned.gates) == 1
    gate = conditioned.gates[0]
    assert gate.detector == "H1" and abs(gate.time - 112.0) < 0.02 and gate.peak > 50
    cut = int(conditioned.corrupt * rate)
    assert np.abs(conditioned.whitened.data[:, cut:-cut]).max() < 8.0
    found = search_segment(conditioned, excess_power_score, threshold=-np.inf)
    near = np.abs(found.time - 112.0) < 0.5
    assert found.gated[near].all() and not found.gated[np.abs(found.time - 112.0) > 2.5].any()
    # gating is PyCBC's inverse Tukey: zero over +-width, ramps of taper
    gated = apply_gates(Strain(np.ones((2, n)), 100.0, 1.0 / rate), [Gate("L1", 110.0)])
    assert gated.data[1, int(10.0 * rate)] == 0.0 and gated.data[1, int(10.6 * rate)] == 1.0 and gated.data[0].min() == 1.0
    assert 0.0 < gated.data[1, int(10.375 * rate)] < 1.0


def test_far_from_constructed_triggers():
    far, n_louder = false_alarm_rates(np.array([5.0, 3.0, 1.0, 2.0]), np.array([4.0, 2.0, 2.0, 0.5]), 100.0)
    np.testing.assert_array_equal(n_louder, [0, 1, 3, 3])
    np.testing.assert_allclose(far, [0.01, 0.01, 0.03, 0.03])  # n_louder = 0: the 1/T floor, an upper limit
    offsets = slide_offsets(27.0, 100, 1.015, 2048.0)
    assert offsets.size == 100 and offsets.min() >= 1.015 * 2048 and offsets.max() <= (27.0 - 1.015) * 2048
    with pytest.raises(ValueError, match="no room for 100 slides"):
        slide_offsets(2.05, 100, 1.015, 2048.0)


def test_time_slides_rank_a_coincident_burst_above_background(tmp_path):
    rate, n = 2048.0, 32 * 2048
    rng = np.random.default_rng(6)
    data = coloured(rng, n, rate)
    t = np.arange(n) / rate
    burst = 3.0 * np.exp(-(((t - 15.0) / 0.1) ** 2)) * np.sin(2 * np.pi * 120.0 * t)
    data += burst  # in both detectors: coincident only at zero lag
    found = search_segment(condition_strain(Strain(data, 0.0, 1.0 / rate)), excess_power_score, n_slides=100, threshold=-np.inf)
    assert found.n_slides == 100 and found.background_time == pytest.approx(100 * 27.0)
    table = trigger_table([found], search="excess_power", edge=2.5)
    loudest = table[np.argmax(np.where(table["in_edge"], -np.inf, table["stat"]))]
    assert abs(loudest["time"] - 15.0) < 1.0 and loudest["n_louder"] == 0  # excess power: within a window
    assert loudest["far"] == pytest.approx(1 / 2700.0) and table.meta["far_floor_hz"] == pytest.approx(1 / 2700.0)
    assert np.isnan(table["far"][table["in_edge"]]).all()


@pytest.mark.realdata
@pytest.mark.skipif(not EVENTS.is_dir(), reason=f"GWOSC event strain not found under {EVENTS}")
@pytest.mark.parametrize("event", sorted(GWOSC_EVENTS))
def test_gwosc_event_loudest_matched_filter_trigger_above_100_slides(event, tmp_path):
    pytest.importorskip("pycbc")
    from skysift.gw.matched_filter import matched_filter_search, template_bank
    from skysift.io import read_table

    start, merger = GWOSC_EVENTS[event]
    files = [EVENTS / f"H-H1_LOSC_4_V2-{start}-32.hdf5", EVENTS / f"L-L1_LOSC_4_V2-{start}-32.hdf5"]
    bank = template_bank((10.0, 50.0))  # the default bank (its low corner reaches chirp mass 8.7)
    matched_filter_search(files, tmp_path / "events.hdf", bank=bank, n_slides=100, threshold=5.0, triggers_path=tmp_path / "triggers.ecsv")
    table = read_table(tmp_path / "triggers.ecsv")
    loudest = table[np.argmax(table["stat"])]
    assert abs(loudest["time"] - merger) < 0.05
    assert loudest["n_louder"] == 0 and loudest["stat"] > table.meta["loudest_background_stat"]
    assert table.meta["n_slides"] == [100] and not table["in_edge"].any() and not table.meta["gates"]


@pytest.mark.realdata
@pytest.mark.skipif(not EVENTS.is_dir(), reason=f"GWOSC event strain not found under {EVENTS}")
@pytest.mark.parametrize("event", sorted(GWOSC_EVENTS))
def test_gwosc_event_no_event_in_the_edge_region(event, tmp_path):
    from skysift.gw.mlgwsc import read_events

    start, _ = GWOSC_EVENTS[event]
    files = [f"H1={EVENTS / f'H-H1_LOSC_4_V2-{start}-32.hdf5'}", str(EVENTS / f"L-L1_LOSC_4_V2-{start}-32.hdf5")]
    run_search(files, tmp_path / "events.hdf", excess_power_score, threshold=-np.inf, edge=2.5)
    times = read_events(tmp_path / "events.hdf")["time"] - start
    assert times.size > 0 and times.min() >= 2.5 + 0.7 - 1e-6 and times.max() <= 32 - 2.5 - 0.3 + 1e-6
