"""Benchmark skysift.diffim against peers on a simulated pair with known transients.

Run from the repository root::

    .venv/bin/python benchmarks/diffim.py [--size 2048] [--peers properimage,sfft,hotpants] [--peer-size 1024]
    .venv/bin/python benchmarks/diffim.py --real      # the DECam and JWST NIRCam pairs from sfft's test suite
    .venv/bin/python benchmarks/diffim.py --drizzled  # the same scenes in electrons and as drizzled-style products

Every method runs in its own fresh Python process on the same saved pair (same
field, same seed for all methods); the time is the wall time of the method's
call alone (imports and input loading excluded, first call in the process, so
cold caches and page faults are included), and the memory is that process's
peak RSS (``ru_maxrss``: interpreter, libraries, the input pair and the method).

It simulates a pair with :func:`skysift.simulate.starfield.simulate_pair`
(different PSF widths, sub-pixel shift, small rotation, Poisson and read noise,
saturated stars) holding 30 transients between S/N 5 and 50, runs the skysift
pipeline, an "ideal ZOGY" (true PSFs, perfect alignment: the upper bound) and
any importable peers, and prints time, peak memory, completeness per S/N bin
(a transient counts as found within 2 px) and false positives.

The whole job is timed as well: ``python -m skysift diffim`` in a fresh
process on the pair written as FITS (imports, reading, every product and the
preview included), as a Snakemake rule runs it, with that process's peak RSS.
HOTPANTS (Becker 2015) is the peer for that figure: it is built from
``../shared/tools/hotpants`` into a temporary directory outside the
repository (skipped where it cannot be built) and timed on its subtraction
alone, the reference being resampled onto the science grid beforehand
(untimed), as its documentation prescribes.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from skysift.diffim import DiffimOptions, detect_candidates, difference_images
from skysift.diffim.zogy import zogy
from skysift.diffim.detect import FLAG_NEAR_SATURATED
from skysift.io import FitsImage
from skysift.simulate.starfield import FieldSpec, double_gaussian_psf, render_point_sources, simulate_pair

SNR_BINS = [(5, 8), (8, 12), (12, 20), (20, 50.1)]


def score(candidates: Table, transients: Table, radius: float = 2.0) -> dict[str, object]:
    """Completeness per S/N bin and false positives (candidates matching no transient)."""
    if len(candidates) == 0:
        found = np.zeros(len(transients), bool)
        matched: set[int] = set()
    else:
        tree = cKDTree(np.column_stack([candidates["x"], candidates["y"]]))
        distance, index = tree.query(np.column_stack([transients["x_sci"], transients["y_sci"]]))
        found = distance <= radius
        matched = set(index[found].tolist())
    completeness = {}
    for low, high in SNR_BINS:
        inside = (transients["snr"] >= low) & (transients["snr"] < high)
        completeness[f"{low}-{int(high)}"] = f"{found[inside].sum()}/{inside.sum()}"
    positive = candidates["scorr"] > 0 if len(candidates) else np.zeros(0, bool)
    false_all = [i for i in range(len(candidates)) if i not in matched]
    clean = [i for i in false_all if len(candidates) and candidates["flags"][i] & 3 == 0]
    return {
        "found": int(found.sum()),
        "completeness": completeness,
        "false_positives": len(false_all),
        "false_unflagged": len(clean),
        "false_positive_sign": int(sum(positive[i] for i in false_all)) if len(candidates) else 0,
    }



def _blank_sky(sim, radius: float = 12.0) -> np.ndarray:
    """Pixels farther than ``radius`` from every star and transient (science frame): pure noise."""
    from scipy import ndimage

    shape = sim.science.shape
    sources = np.zeros(shape, bool)
    x = np.concatenate([sim.stars["x_sci"], sim.transients["x_sci"]])
    y = np.concatenate([sim.stars["y_sci"], sim.transients["y_sci"]])
    inside = (x >= 0) & (x < shape[1] - 0.5) & (y >= 0) & (y < shape[0] - 0.5)
    sources[np.round(y[inside]).astype(int), np.round(x[inside]).astype(int)] = True
    blank = ndimage.distance_transform_edt(~sources) > radius
    bright = sim.stars["flux"] > 3e4  # wide wings: keep farther away
    for xs, ys in zip(sim.stars["x_sci"][bright], sim.stars["y_sci"][bright]):
        yy, xx = int(round(ys)), int(round(xs))
        blank[max(0, yy - 40) : yy + 41, max(0, xx - 40) : xx + 41] = False
    blank[:20, :] = blank[-20:, :] = blank[:, :20] = blank[:, -20:] = False
    return blank


def _noise_std(image: np.ndarray, blank: np.ndarray) -> float:
    values = np.asarray(image)[blank]
    values = values[np.isfinite(values)]
    return float(np.std(values)) if values.size else float("nan")


def _robust_std(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _fits_image(data, wcs, name, saturation):
    return FitsImage(np.asarray(data, dtype=np.float64), fits.Header({"SATURATE": saturation}), wcs, Path(name), 0)


def run_skysift(sim, options: DiffimOptions | None = None):
    """The full skysift pipeline (registration and PSF estimation included); returns (candidates, S_corr)."""
    options = options or DiffimOptions()
    science = _fits_image(sim.science, sim.science_wcs, "science.fits", sim.spec.saturation)
    reference = _fits_image(sim.reference, sim.reference_wcs, "reference.fits", sim.spec.saturation)
    result = difference_images(science, reference, options=options)
    return result.candidates, result.score_corr


def run_ideal(sim):
    """ZOGY with the true PSFs, perfectly aligned reference, true noise and flux scale."""
    spec = sim.spec
    stars = sim.stars
    shape = sim.science.shape
    # Re-render the reference directly on the science grid: no resampling error at all.
    rng = np.random.default_rng(99)
    truth = render_point_sources(shape, stars["x_sci"], stars["y_sci"], stars["flux"], spec.reference_fwhm)
    reference = np.minimum(rng.poisson(truth + spec.reference_sky) + rng.normal(0, spec.read_noise, shape), spec.saturation)
    saturated = (sim.science >= spec.saturation) | (reference >= spec.saturation)
    from skysift.diffim.masks import grow_mask

    saturated = grow_mask(saturated, 8)
    new = np.where(saturated, 0.0, sim.science - spec.science_sky)
    reference = np.where(saturated, 0.0, reference - spec.reference_sky)
    sigma_n = np.sqrt(spec.science_sky + spec.read_noise**2)
    sigma_r = np.sqrt(spec.reference_sky + spec.read_noise**2)
    size = 2 * int(np.ceil(4 * spec.science_fwhm * 1.5)) + 1
    result = zogy(
        new, reference, double_gaussian_psf(spec.science_fwhm, size), double_gaussian_psf(spec.reference_fwhm, size),
        sigma_n, sigma_r, flux_new=spec.science_flux_scale,
        variance_new=sigma_n**2 + np.maximum(new, 0), variance_reference=sigma_r**2 + np.maximum(reference, 0),
    )
    mask = saturated.copy()
    mask[:10, :] = mask[-10:, :] = mask[:, :10] = mask[:, -10:] = True
    candidates = detect_candidates(
        result.score_corr, mask=mask, saturated=saturated, flux=result.flux_psf, flux_err=result.flux_psf_err,
        exclude_flags=FLAG_NEAR_SATURATED,
    )
    return candidates, np.where(mask, np.nan, result.score_corr)


def run_properimage(sim, workdir: Path):
    """properimage's ZOGY (Sánchez et al. 2019) on the same pair, detection on its S_corr.

    properimage returns ``(D, P_D, S_corr, mask)`` with ``mask`` True on bad
    pixels. Its S_corr is not in sigma units for these inputs (its standard
    deviation on blank sky is ~1e-3, which is why the old adapter detected
    nothing at 5): it is divided here by its robust (MAD) standard deviation
    over unmasked pixels, then run through the same detection as skysift.
    """
    from properimage.operations import subtract

    science_path = workdir / "sci.fits"
    reference_path = workdir / "ref.fits"
    fits.PrimaryHDU(sim.science.astype(np.float64), header=sim.science_wcs.to_header()).writeto(science_path, overwrite=True)
    fits.PrimaryHDU(sim.reference.astype(np.float64), header=sim.reference_wcs.to_header()).writeto(reference_path, overwrite=True)
    _, _, scorr, mask = subtract(
        ref=str(reference_path), new=str(science_path), smooth_psf=False, fitted_psf=True, align=True,
        iterative=False, beta=True, shift=True,
    )
    scorr = np.asarray(np.real(scorr), dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) if np.shape(mask) == scorr.shape else np.zeros(scorr.shape, bool)
    saturated = sim.science >= sim.spec.saturation
    scorr = scorr / _robust_std(scorr[~mask])
    mask[:10, :] = mask[-10:, :] = mask[:, :10] = mask[:, -10:] = True
    candidates = detect_candidates(np.nan_to_num(scorr), mask=mask, saturated=saturated, exclude_flags=FLAG_NEAR_SATURATED)
    return candidates, np.where(mask, np.nan, scorr)


def run_sfft(sim, workdir: Path):
    """SFFT (Hu et al. 2022), numpy backend, on the reference aligned by skysift's registration.

    sfft only subtracts (its inputs must be aligned), so the reference is
    resampled onto the science grid by :func:`skysift.diffim.register`
    beforehand (not timed). The difference ``SCI - K (x) REF`` is matched-filtered
    with the true science PSF and divided by its robust standard deviation,
    then run through the same detection as skysift (no source-noise term:
    sfft's decorrelated difference has none either).
    """
    from sfft.CustomizedPacket import Customized_Packet

    from skysift.diffim import register

    spec = sim.spec
    science = sim.science.astype(np.float64) - spec.science_sky
    reference = sim.reference.astype(np.float64) - spec.reference_sky
    registration = register(science, reference, sim.science_wcs, sim.reference_wcs, refine=False)
    aligned = registration.aligned.astype(np.float64) + spec.reference_sky
    paths = {}
    for name, data in (("ref", aligned), ("sci", sim.science.astype(np.float64))):
        paths[name] = workdir / f"sfft_{name}.fits"
        fits.PrimaryHDU(data).writeto(paths[name], overwrite=True)
    saturated = (sim.science >= spec.saturation) | (aligned >= spec.saturation)
    start = time.perf_counter()
    _, difference = Customized_Packet.CP(
        FITS_REF=str(paths["ref"]), FITS_SCI=str(paths["sci"]), FITS_mREF=str(paths["ref"]), FITS_mSCI=str(paths["sci"]),
        ForceConv="REF", GKerHW=int(np.ceil(2.5 * spec.science_fwhm)), FITS_DIFF=None, KerPolyOrder=2, BGPolyOrder=2,
        ConstPhotRatio=True, BACKEND_4SUBTRACT="Numpy", NUM_CPU_THREADS_4SUBTRACT=os.cpu_count() or 1, VERBOSE_LEVEL=0,
    )
    elapsed = time.perf_counter() - start
    difference = np.asarray(difference, dtype=np.float64).T  # sfft works on transposed arrays
    from scipy.signal import fftconvolve

    psf = double_gaussian_psf(spec.science_fwhm, 2 * int(np.ceil(4 * spec.science_fwhm)) + 1)
    filtered = fftconvolve(np.nan_to_num(difference), psf[::-1, ::-1], mode="same")
    from skysift.diffim.masks import grow_mask

    mask = grow_mask(saturated, 8) | registration.footprint_mask
    mask[:10, :] = mask[-10:, :] = mask[:, :10] = mask[:, -10:] = True
    snr = filtered / _robust_std(filtered[~mask])
    candidates = detect_candidates(snr, mask=mask, saturated=saturated, exclude_flags=FLAG_NEAR_SATURATED)
    return candidates, np.where(mask, np.nan, snr), elapsed


def _simulate(size: int, seed: int):
    spec = FieldSpec(
        image_size=size,
        n_stars=int(400 * (size / 512) ** 2),
        n_saturated=max(3, size // 256),
        n_transients=30,
        transient_snr_min=5.0,
        transient_snr_max=50.0,
    )
    return simulate_pair(spec, np.random.default_rng(seed))


def _worker(method: str, pair: Path, psf_grid: int, output: Path) -> None:
    """Run one method in this (fresh) process and write its measurements as JSON.

    The pair is loaded from the parent's pickle, so that the simulation's own
    memory does not count in this process's peak RSS.
    """
    with open(pair, "rb") as handle:
        sim, blank = pickle.load(handle)
    workdir = Path(tempfile.mkdtemp(prefix="skysift-diffim-bench-"))
    start = time.perf_counter()
    if method == "skysift":
        candidates, scorr = run_skysift(sim, DiffimOptions(psf_grid=psf_grid))
    elif method == "ideal":
        candidates, scorr = run_ideal(sim)
    elif method == "properimage":
        candidates, scorr = run_properimage(sim, workdir)
    elif method == "sfft":
        candidates, scorr, _ = run_sfft(sim, workdir)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = score(candidates, sim.transients)
    near_saturated = 0
    if len(candidates):
        saturated_stars = sim.stars[sim.stars["saturated"]]
        tree = cKDTree(np.column_stack([saturated_stars["x_sci"], saturated_stars["y_sci"]]))
        distance, _ = tree.query(np.column_stack([candidates["x"], candidates["y"]]))
        matched = set()
        if len(sim.transients):
            t_tree = cKDTree(np.column_stack([sim.transients["x_sci"], sim.transients["y_sci"]]))
            t_distance, _ = t_tree.query(np.column_stack([candidates["x"], candidates["y"]]))
            matched = set(np.nonzero(t_distance <= 2.0)[0].tolist())
        near_saturated = int(sum(1 for i, d in enumerate(distance) if d < 60 and i not in matched))
    result.update(seconds=seconds, peak_mib=peak, scorr_std=_noise_std(scorr, blank), fp_saturated=near_saturated)
    output.write_text(json.dumps(result))


def _run_in_subprocess(method: str, pair: Path, psf_grid: int, timeout: float) -> dict | str:
    with tempfile.TemporaryDirectory(prefix="skysift-diffim-bench-") as scratch:
        output = Path(scratch) / "result.json"
        command = [sys.executable, __file__, "--worker", method, "--pair", str(pair),
                   "--psf-grid", str(psf_grid), "--output", str(output)]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:.0f} s"
        if completed.returncode != 0 or not output.is_file():
            return "failed: " + (completed.stderr.strip().splitlines() or ["?"])[-1]
        return json.loads(output.read_text())


REPO_ROOT = Path(__file__).resolve().parents[1]
HOTPANTS_SOURCE = REPO_ROOT.parent / "shared" / "tools" / "hotpants"


def _write_pair_fits(sim, directory: Path) -> tuple[Path, Path]:
    """The simulated pair as FITS files with WCS and SATURATE (what a user hands ``skysift diffim``)."""
    paths = []
    for name, data, wcs in (("science.fits", sim.science, sim.science_wcs), ("reference.fits", sim.reference, sim.reference_wcs)):
        header = wcs.to_header()
        header["SATURATE"] = sim.spec.saturation
        path = directory / name
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path, overwrite=True)
        paths.append(path)
    return paths[0], paths[1]


def _timed_process(command: list[str], **kwargs) -> tuple[float, float, int, str]:
    """Run a command; return (wall seconds, its peak RSS in MiB, exit status, stderr tail)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    return seconds, usage.ru_maxrss / 1024, process.returncode, stderr.strip()[-300:]


def _job_command(science: Path, reference: Path, outdir: Path) -> list[str]:
    return [sys.executable, "-m", "skysift", "diffim", "--science", str(science), "--reference", str(reference),
            "--outdir", str(outdir)]


def build_hotpants() -> Path | str:
    """Build HOTPANTS from the shared source into a temporary directory (never inside the repository)."""
    if not (HOTPANTS_SOURCE / "main.c").is_file():
        return f"no HOTPANTS source under {HOTPANTS_SOURCE}"
    if not Path("/usr/include/fitsio.h").is_file():
        return "cfitsio headers missing (apt-get install libcfitsio-dev)"
    build = Path(tempfile.mkdtemp(prefix="skysift-hotpants-"))
    for item in HOTPANTS_SOURCE.iterdir():
        if item.is_file():
            shutil.copy(item, build / item.name)
            (build / item.name).chmod(0o644)
    completed = subprocess.run(
        ["make", "-C", str(build), "hotpants", "CFITSIOINCDIR=/usr/include", "LIBDIR=/usr/lib/x86_64-linux-gnu",
         "COPTS=-funroll-loops -O3 -std=c99 -Wall -I/usr/include -D_GNU_SOURCE -fcommon"],
        capture_output=True, text=True)
    if completed.returncode != 0 or not (build / "hotpants").is_file():
        shutil.rmtree(build, ignore_errors=True)
        return "build failed: " + (completed.stderr.strip().splitlines() or ["?"])[-1]
    return build / "hotpants"


def _hotpants_setup(executable: Path, sim, science: Path, workdir: Path):
    """The reference resampled onto the science grid by the WCSs (untimed) and HOTPANTS's command line."""
    from skysift.diffim import register

    spec = sim.spec
    registration = register(sim.science.astype(np.float64), sim.reference.astype(np.float64), sim.science_wcs,
                            sim.reference_wcs, refine=False)
    template = workdir / "reference_on_science_grid.fits"
    fits.PrimaryHDU(np.where(registration.footprint_mask, 0.0, registration.aligned).astype(np.float32),
                    header=sim.science_wcs.to_header()).writeto(template, overwrite=True)
    difference_path = workdir / "hotpants_difference.fits"
    command = [str(executable), "-inim", str(science), "-tmplim", str(template), "-outim", str(difference_path),
               "-tu", f"{spec.saturation:g}", "-iu", f"{spec.saturation:g}", "-tl", "-100", "-il", "-100", "-n", "i", "-c", "t"]
    return registration, difference_path, command


def _score_hotpants(sim, registration, difference_path: Path) -> dict:
    """Detection on HOTPANTS's difference as for sfft: matched filter with the true PSF, robust normalisation."""
    from scipy.signal import fftconvolve

    from skysift.diffim.masks import grow_mask

    spec = sim.spec
    difference = np.nan_to_num(fits.getdata(difference_path).astype(np.float64))
    psf = double_gaussian_psf(spec.science_fwhm, 2 * int(np.ceil(4 * spec.science_fwhm)) + 1)
    filtered = fftconvolve(difference, psf[::-1, ::-1], mode="same")
    saturated = (sim.science >= spec.saturation) | (registration.aligned >= spec.saturation)
    mask = grow_mask(saturated, 8) | registration.footprint_mask
    mask[:10, :] = mask[-10:, :] = mask[:, :10] = mask[:, -10:] = True
    snr = filtered / _robust_std(filtered[~mask])
    return score(detect_candidates(snr, mask=mask, saturated=saturated, exclude_flags=FLAG_NEAR_SATURATED), sim.transients)


def whole_job(sim, repeat: int, with_hotpants: bool) -> list[tuple[str, dict | str]]:
    """The user's job (fresh ``python -m skysift diffim`` on FITS) beside HOTPANTS's subtraction, same pair, same run.

    The two are run alternately, ``repeat`` times each, so that both see the
    same load on a shared machine; the medians are reported.
    """
    size = sim.science.shape[0]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    with tempfile.TemporaryDirectory(prefix="skysift-diffim-job-") as scratch:
        workdir = Path(scratch)
        science, reference = _write_pair_fits(sim, workdir)
        hotpants = build_hotpants() if with_hotpants else "not requested"
        setup = _hotpants_setup(hotpants, sim, science, workdir) if isinstance(hotpants, Path) else None
        runs: dict[str, list[tuple[float, float]]] = {"job": [], "hotpants": []}
        failure: dict[str, str] = {}
        for _ in range(max(1, repeat)):
            seconds, peak, status, stderr = _timed_process(_job_command(science, reference, workdir / "out"), env=environment)
            if status != 0:
                failure["job"] = f"failed ({status}): {stderr}"
                break
            runs["job"].append((seconds, peak))
            if setup is not None:
                seconds, peak, status, stderr = _timed_process(setup[2], cwd=workdir)
                if status != 0 or not setup[1].is_file():
                    failure["hotpants"] = f"failed ({status}): {stderr}"
                    setup = None
                else:
                    runs["hotpants"].append((seconds, peak))
        rows: list[tuple[str, dict | str]] = []
        if "job" in failure:
            rows.append((f"skysift diffim job (fresh process) @{size}", failure["job"]))
        else:
            result = score(Table.read(workdir / "out" / "candidates.ecsv", format="ascii.ecsv"), sim.transients)
            rows.append((f"skysift diffim job (fresh process) @{size}", _timing(result, runs["job"])))
        if isinstance(hotpants, Path):
            if runs["hotpants"]:
                registration, difference_path, _ = _hotpants_setup(hotpants, sim, science, workdir) if setup is None else setup
                rows.append((f"hotpants subtraction @{size}", _timing(_score_hotpants(sim, registration, difference_path), runs["hotpants"])))
            else:
                rows.append((f"hotpants subtraction @{size}", failure.get("hotpants", "not run")))
            shutil.rmtree(hotpants.parent, ignore_errors=True)
        else:
            rows.append((f"hotpants @{size}", f"SKIPPED: {hotpants}"))
    return rows


def _timing(result: dict, runs: list[tuple[float, float]]) -> dict:
    times = [seconds for seconds, _ in runs]
    result.update(seconds=float(np.median(times)), times=[round(t, 2) for t in times], peak_mib=max(peak for _, peak in runs))
    return result


def _available_mib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _importable(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:  # ImportError, or a peer's own import-time failure
        return f"{module} not importable ({type(exc).__name__}: {exc})"
    return None


def real_data(data_dir: Path) -> int:
    """skysift on sfft's DECam pair, residual noise next to sfft's own shipped difference."""
    science_path = data_dir / "input_data" / "DEC-OBS04a.mini.fits"
    reference_path = data_dir / "input_data" / "DEC-OBS18a.mini.fits"
    sfft_difference = data_dir / "4check" / "FinalDifference.fits"
    if not (science_path.is_file() and reference_path.is_file()):
        print(f"SKIPPED --real: DECam pair not found under {data_dir}")
        return 0
    from skysift.io import read_fits_image

    science = read_fits_image(science_path, require_wcs=True)
    reference = read_fits_image(reference_path, require_wcs=True)
    start = time.perf_counter()
    result = difference_images(science, reference, options=DiffimOptions(fwhm_guess=4.5, background_box=32))
    seconds = time.perf_counter() - start
    # Star-free pixels: not within 3 FWHM of any star found in either image, unmasked.
    from skysift.diffim.masks import grow_mask

    stars = np.zeros(result.science.shape, bool)
    for image in (result.science, result.reference_aligned):
        from skysift.diffim.stars import find_stars

        found = find_stars(image, _robust_std(image[~result.mask]), mask=result.mask, fwhm=4.5, threshold=5.0, max_stars=None)
        stars[np.round(found["y"]).astype(int), np.round(found["x"]).astype(int)] = True
    star_free = ~grow_mask(stars, 15) & ~result.mask
    print(f"DECam pair {science_path.name} - {reference_path.name}: {result.science.shape}, skysift {seconds:.2f} s, "
          f"{len(result.candidates)} candidates, registration rms {result.registration_rms:.3f} px, "
          f"{star_free.sum()} star-free pixels")
    d = result.difference[star_free]
    print(f"  skysift D (unit-variance by construction): std {np.std(d):.3f}, robust std {_robust_std(d):.3f}")
    print(f"  skysift S_corr: std {np.nanstd(result.score_corr[star_free]):.3f}, robust {_robust_std(result.score_corr[star_free]):.3f}")
    # D is in units of its own expected noise; to compare with sfft's difference
    # (in science ADU) we divide that by the noise expected from the inputs'
    # background sigma: sqrt(sigma_sci^2 + (F_n/F_r)^2 sigma_ref^2 k) with k ~ 1.
    expected = np.hypot(result.sigma_science, result.flux_scale.ratio * result.sigma_reference)
    if sfft_difference.is_file():
        sfft_d = fits.getdata(sfft_difference).astype(np.float64)
        note = "(matching input: its science stack is Stack-DEC-OBS04, 5 frames median-combined, not OBS04a alone)"
        if sfft_d.shape == result.difference.shape:
            values = sfft_d[star_free]
            # Same normalisation as skysift's D: residual over the noise expected
            # from its inputs, here the two stacks' own robust background std.
            stacks = [data_dir / "4check" / f"Stack-DEC-OBS{n}.fits" for n in ("04", "18")]
            stack_sigma = [_robust_std(fits.getdata(path).astype(np.float64)[star_free]) for path in stacks if path.is_file()]
            stack_expected = float(np.hypot(*stack_sigma)) if len(stack_sigma) == 2 else float("nan")
            print(f"  sfft FinalDifference.fits {note}: raw std {np.nanstd(values):.3f} ADU, robust {_robust_std(values):.3f} ADU; "
                  f"stack noise sqrt(s_sci^2 + s_ref^2) = {stack_expected:.3f} ADU -> normalised robust std "
                  f"{_robust_std(values) / stack_expected:.3f}")
            print(f"  skysift single pair: expected noise sqrt(s_n^2 + (F_n/F_r)^2 s_r^2) = {expected:.3f} ADU")
        decorrelated = data_dir / "4check" / "FinalDifference.DeCorr.fits"
        if decorrelated.is_file():
            values = fits.getdata(decorrelated).astype(np.float64)[star_free]
            print(f"  sfft FinalDifference.DeCorr.fits: robust std {_robust_std(values):.3f} (same pixels)")
    return 0


def _match_count(first: Table, second: Table, radius: float = 3.0) -> int:
    """Candidates of ``first`` within ``radius`` px of one of ``second``."""
    if len(first) == 0 or len(second) == 0:
        return 0
    distance, _ = cKDTree(np.column_stack([second["x"], second["y"]])).query(np.column_stack([first["x"], first["y"]]))
    return int((distance <= radius).sum())


def real_data_jwst(data_dir: Path) -> int:
    """skysift on sfft's JWST NIRCam F200W i2d pair (with and without its noise maps), beside sfft's decorrelated SNR map."""
    from skysift.diffim import run_diffim

    science = data_dir / "input_data" / "jw02561001002-02561-o001_t003_nircam_clear-f200w_i2d_stamp.fits"
    reference = data_dir / "input_data" / "jw01324001001-01324-o001_t001_nircam_clear-f200w_i2d_stamp.fits"
    if not (science.is_file() and reference.is_file()):
        print(f"SKIPPED --real JWST: pair not found under {data_dir}")
        return 0
    noise = {"science_noise_path": data_dir / "auxiliary" / science.name.replace(".fits", ".noise.fits"),
             "reference_noise_path": data_dir / "auxiliary" / reference.name.replace(".fits", ".noise.fits")}
    sfft_path = next((data_dir / "4check").glob("*SNR.fits"), None)
    sfft_snr = fits.getdata(sfft_path).astype(np.float64) if sfft_path is not None else None
    print(f"JWST NIRCam F200W pair {science.name} - {reference.name} (MJy/sr, drizzled)")
    for label, extra in (("noise maps", noise), ("header EFFGAIN, no noise maps", {})):
        with tempfile.TemporaryDirectory(prefix="skysift-diffim-jwst-") as scratch:
            start = time.perf_counter()
            outputs = run_diffim(science, reference, scratch, **extra)
            seconds = time.perf_counter() - start
            scorr = fits.getdata(outputs["scorr"]).astype(np.float64)
            header = fits.getheader(outputs["scorr"])
            candidates = Table.read(outputs["candidates"], format="ascii.ecsv")
        finite = np.isfinite(scorr)
        print(f"  skysift ({label}): {seconds:.2f} s (run_diffim), S_corr robust std {_robust_std(scorr[finite]):.3f} over "
              f"{finite.sum()} unmasked pixels, {len(candidates)} candidates >= 5 sigma; measured correlated-noise width "
              f"{header['SCORRWID']:.2f} (normalised: {header['SCORRNRM']}); science variance: {header['NOISESCI']}")
        if sfft_snr is not None and sfft_snr.shape == scorr.shape:
            sfft_mask = ~finite | ~np.isfinite(sfft_snr)
            sfft_candidates = detect_candidates(np.nan_to_num(sfft_snr), mask=sfft_mask, threshold=5.0)
            print(f"    sfft decorrelated SNR on the same pixels: robust std {_robust_std(sfft_snr[finite]):.3f}, "
                  f"{len(sfft_candidates)} regions >= 5 sigma (same detection); {_match_count(candidates, sfft_candidates)} "
                  f"of skysift's candidates within 3 px of one of sfft's")
    # Before issue #16 (for comparison): GAIN=1 assumed on MJy/sr, or no source noise, per-pixel noise only.
    with tempfile.TemporaryDirectory(prefix="skysift-diffim-jwst-") as scratch:
        options = DiffimOptions(noise_extensions=False, gain_science=1.0, gain_reference=1.0, correlated_noise="never")
        scorr = fits.getdata(run_diffim(science, reference, scratch, options=options)["scorr"]).astype(np.float64)
        print(f"  old model (GAIN=1 on MJy/sr, no correlated-noise correction): S_corr robust std {_robust_std(scorr):.3f}")
    return 0


def drizzled_comparison(size: int, seeds: list[int]) -> int:
    """Each scene differenced in electrons and as drizzled-style products (MJy/sr, resampled, ERR, no GAIN, NaN cores)."""
    from skysift.diffim import run_diffim
    from skysift.simulate.drizzled import drizzle_style, write_drizzled

    print(f"{'seed':>4s} {'form':>9s} {'found S/N>=8':>13s} {'FP':>4s} {'S_corr std (blank)':>19s} {'width':>6s}")
    totals = {"electrons": [0, 0, 0], "drizzled": [0, 0, 0]}
    for seed in seeds:
        sim = _simulate(size, seed)
        blank = _blank_sky(sim)
        strong = sim.transients["snr"] >= 8
        with tempfile.TemporaryDirectory(prefix="skysift-diffim-drz-") as scratch:
            workdir = Path(scratch)
            electrons = run_diffim(*_write_pair_fits(sim, workdir), workdir / "electrons")
            rng = np.random.default_rng(seed + 1000)
            spec = sim.spec
            common = dict(read_noise=spec.read_noise, saturation=spec.saturation, rng=rng, gain=1.8, photmjsr=0.6)
            science = drizzle_style(sim.science, sim.science_wcs, sky=spec.science_sky, exposure_time=1500.0, **common)
            reference = drizzle_style(sim.reference, sim.reference_wcs, sky=spec.reference_sky, exposure_time=3000.0, **common)
            drizzled = run_diffim(write_drizzled(workdir / "science_i2d.fits", science),
                                  write_drizzled(workdir / "reference_i2d.fits", reference), workdir / "drizzled")
            for form, outputs, shift in (("electrons", electrons, (0.0, 0.0)), ("drizzled", drizzled, science.shift)):
                transients = sim.transients.copy()
                transients["x_sci"] = transients["x_sci"] + shift[0]
                transients["y_sci"] = transients["y_sci"] + shift[1]
                candidates = Table.read(outputs["candidates"], format="ascii.ecsv")
                found = _found_mask(candidates, transients)
                false = len(candidates) - _match_count(candidates, transients_as_candidates(transients), radius=2.0)
                scorr = fits.getdata(outputs["scorr"]).astype(np.float64)
                # Blank sky moves with the resampling shift (a fraction of a pixel: the 12 px margin covers it).
                width = fits.getheader(outputs["scorr"])["SCORRWID"]
                print(f"{seed:4d} {form:>9s} {found[strong].sum():>6d}/{strong.sum():<6d} {false:4d} "
                      f"{_robust_std(scorr[blank]):19.3f} {width:6.2f}")
                totals[form][0] += int(found[strong].sum())
                totals[form][1] += int(strong.sum())
                totals[form][2] += false
    for form, (found, total, false) in totals.items():
        print(f"all {form:>9s}: completeness at S/N >= 8 {found}/{total} = {100 * found / max(total, 1):.1f} %, {false} false positives")
    return 0


def transients_as_candidates(transients: Table) -> Table:
    return Table({"x": transients["x_sci"], "y": transients["y_sci"]})


def _found_mask(candidates: Table, transients: Table, radius: float = 2.0) -> np.ndarray:
    if len(candidates) == 0:
        return np.zeros(len(transients), bool)
    distance, _ = cKDTree(np.column_stack([candidates["x"], candidates["y"]])).query(
        np.column_stack([transients["x_sci"], transients["y_sci"]]))
    return distance <= radius


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--peers", default="properimage,sfft,hotpants",
                        help="comma-separated: properimage, sfft, hotpants (empty for none); hotpants runs at --size beside the whole job")
    parser.add_argument("--peer-size", type=int, default=None, help="image size for the peers (default --size); "
                        "skysift and ideal ZOGY are rerun at this size for the ratios when it differs")
    parser.add_argument("--peer-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--psf-grid", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="skysift runs (fresh processes); the median is reported")
    parser.add_argument("--real", action="store_true", help="run on the DECam and JWST pairs in ../shared/data/diffim")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "diffim" / "sfft_decam_i_pair")
    parser.add_argument("--jwst-data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "diffim" / "sfft_jwst_nircam_f200w_pair")
    parser.add_argument("--drizzled", action="store_true",
                        help="completeness and S_corr of the same scenes in electrons and as drizzled-style products")
    parser.add_argument("--drizzled-seeds", default="1,2,3", help="comma-separated seeds of the --drizzled scenes")
    parser.add_argument("--job-repeat", type=int, default=3, help="fresh-process runs of the whole job and of HOTPANTS")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pair", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.pair, args.psf_grid, args.output)
        return 0
    if args.real:
        return min(real_data(args.data), real_data_jwst(args.jwst_data))
    if args.drizzled:
        return drizzled_comparison(args.size, [int(seed) for seed in args.drizzled_seeds.split(",")])

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    peer_size = args.peer_size or args.size
    sizes = [args.size] + ([peer_size] if peers and peer_size != args.size else [])
    rows = []
    scratch = tempfile.TemporaryDirectory(prefix="skysift-diffim-bench-")
    for size in sizes:
        sim = _simulate(size, args.seed)
        pair = Path(scratch.name) / f"pair_{size}.pickle"
        with open(pair, "wb") as handle:
            pickle.dump((sim, _blank_sky(sim)), handle)
        print(f"field {size}x{size}, {sim.spec.n_stars} stars, {sim.spec.n_saturated} saturated, 30 transients S/N 5-50; "
              f"shift {sim.shift[0]:.2f},{sim.shift[1]:.2f} px, rotation {sim.rotation:.4f} deg")
        runs = [_run_in_subprocess("skysift", pair, args.psf_grid, 1200) for _ in range(max(1, args.repeat))]
        good = [r for r in runs if isinstance(r, dict)]
        if not good:
            print(f"skysift {size}: {runs[0]}")
            return 1
        median = sorted(good, key=lambda r: r["seconds"])[len(good) // 2]
        median["times"] = [round(r["seconds"], 2) for r in good]
        rows.append((f"skysift @{size}", median))
        ideal = _run_in_subprocess("ideal", pair, args.psf_grid, 1200)
        rows.append((f"ideal ZOGY (true PSFs, aligned) @{size}", ideal))
        if size == args.size:
            rows.extend(whole_job(sim, args.job_repeat, "hotpants" in peers))
        if size != peer_size:
            continue
        for peer in peers:
            if peer == "hotpants":
                continue  # run with the whole job, above
            module = {"properimage": "properimage", "sfft": "sfft"}.get(peer)
            if module is None:
                print(f"unknown peer {peer!r}, skipped")
                continue
            problem = _importable(module)
            if problem is None and peer == "sfft":
                # sfft's numpy backend needed ~19 GB at 2048x2048 here; it scales with the pixel count.
                need = 19000 * (size / 2048) ** 2
                if need > 0.8 * _available_mib():
                    problem = f"needs ~{need:.0f} MiB, {_available_mib():.0f} MiB available"
            if problem:
                print(f"SKIPPED {peer} @{size}: {problem}")
                continue
            rows.append((f"{peer} @{size}", _run_in_subprocess(peer, pair, args.psf_grid, args.peer_timeout)))

    scratch.cleanup()
    header = (f"{'method':40s} {'time s':>7s} {'RSS MiB':>8s} {'found':>6s} "
              + " ".join(f"{lo}-{int(hi):<2d}".rjust(6) for lo, hi in SNR_BINS)
              + f" {'FP':>4s} {'FP-sat':>6s} {'Scorr std':>9s}")
    print(header)
    print("-" * len(header))
    for name, result in rows:
        if not isinstance(result, dict):
            print(f"{name:40s} {result}")
            continue
        bins = " ".join(f"{result['completeness'][key]:>6s}" for key in result["completeness"])
        print(f"{name:40s} {result['seconds']:7.2f} {result['peak_mib']:8.0f} {result['found']:6d} {bins} "
              f"{result['false_positives']:4d} {result.get('fp_saturated', -1):6d} {result.get('scorr_std', float('nan')):9.3f}")
    for name, result in rows:
        if isinstance(result, dict) and "times" in result:
            print(f"{name}: times of the {len(result['times'])} runs {result['times']} s (median shown)")
    job, hotpants = dict(rows).get(f"skysift diffim job (fresh process) @{args.size}"), dict(rows).get(f"hotpants subtraction @{args.size}")
    if isinstance(job, dict) and isinstance(hotpants, dict):
        print(f"whole job / HOTPANTS subtraction @{args.size}: {job['seconds']:.2f} s / {hotpants['seconds']:.2f} s = "
              f"{job['seconds'] / hotpants['seconds']:.2f} (medians, interleaved in this run)")
    for size in sizes:
        base = dict(rows).get(f"skysift @{size}")
        for name, result in rows:
            if name.endswith(f"@{size}") and not name.startswith("skysift") and isinstance(result, dict) and isinstance(base, dict):
                print(f"ratio time({name}) / time(skysift @{size}) = {result['seconds'] / base['seconds']:.2f}; "
                      f"memory ratio {result['peak_mib'] / base['peak_mib']:.2f}")
    print("time: the method's call in a fresh process (job: the whole `python -m skysift diffim` process; hotpants: its "
          "process, reprojection excluded); RSS: that process's peak (inputs and libraries included); "
          "FP: candidates within 2 px of no transient; FP-sat: FPs within 60 px of a saturated star; "
          "Scorr std: std of S_corr (peers: their normalised statistic) on pure-noise pixels (>12 px from every source)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
