"""Write a simulated reference/science pair and its truth as skysift products.

The I/O edge of :mod:`skysift.simulate.starfield`: it draws the pair, then
writes ``reference.fits``, ``science.fits`` (electrons, with WCS, noise and
saturation keywords and the provenance stamp), ``truth.h5`` (one sample per
transient: parameters plus a science-image stamp) and ``preview.png``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from skysift.context import RunContext, resolve_context
from skysift.io import save_figure, write_fits_image, write_product, write_table
from skysift.log import get_logger
from skysift.plotting import image_panels
from skysift.simulate.starfield import FieldSpec, PairSimulation, simulate_pair

__all__ = ["TRUTH_STAMP_SIZE", "cut_stamps", "run_simulate_pair"]

log = get_logger(__name__)
#: Side of the science-image stamps stored with each transient in ``truth.h5``.
TRUTH_STAMP_SIZE = 25


def cut_stamps(image: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Cut square stamps centred on the nearest pixels to (x, y), NaN-padded at edges.

    Vectorised with fancy indexing into a NaN-padded copy (no loop per stamp).
    """
    if size % 2 == 0:
        raise ValueError(f"stamp size must be odd, got {size}")
    half = size // 2
    padded = np.pad(image.astype(np.float32), half, mode="constant", constant_values=np.nan)
    offsets = np.arange(size)
    cx = np.round(np.asarray(x)).astype(int)
    cy = np.round(np.asarray(y)).astype(int)
    rows = cy[:, None, None] + offsets[None, :, None]
    columns = cx[:, None, None] + offsets[None, None, :]
    return padded[rows, columns]


def _image_header(spec: FieldSpec, which: str) -> dict[str, object]:
    fwhm = spec.science_fwhm if which == "science" else spec.reference_fwhm
    sky = spec.science_sky if which == "science" else spec.reference_sky
    return {
        "GAIN": (1.0, "e-/ADU (images are in electrons)"),
        "RDNOISE": (spec.read_noise, "read noise (e-)"),
        "SATURATE": (spec.saturation, "saturation level (e-)"),
        "SIMFWHM": (fwhm, "simulated PSF core FWHM (pix)"),
        "SIMSKY": (sky, "simulated sky level (e-/pix)"),
        "IMAGETYP": (which, "skysift simulated image"),
    }


def run_simulate_pair(
    outdir: str | os.PathLike[str],
    spec: FieldSpec,
    *,
    seed: int,
    pair_id: str = "sim",
    context: RunContext | None = None,
) -> dict[str, Path]:
    """Simulate one pair and write its products into ``outdir``.

    Parameters
    ----------
    outdir : str or path-like
        Output directory (created).
    spec : FieldSpec
        Field parameters.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the products are a pure
        function of (spec, seed).
    pair_id : str
        Name recorded in the products.
    context : RunContext, optional
        Rule, configuration digest, provenance labels and Dask client
        (:class:`skysift.context.RunContext`).

    Returns
    -------
    dict of str to pathlib.Path
        ``reference``, ``science``, ``truth``, ``stars`` and ``preview`` paths.
    """
    outdir = Path(outdir)
    log.info("simulating pair %s (%d px, %d stars, %d transients, seed %d)", pair_id, spec.image_size, spec.n_stars, spec.n_transients, seed)
    simulation: PairSimulation = simulate_pair(spec, np.random.default_rng(seed))
    provenance = resolve_context(context, "simulate_pair").provenance(inputs=(), seed=seed, extra={"pair_id": pair_id})
    paths = {
        "reference": outdir / "reference.fits",
        "science": outdir / "science.fits",
        "truth": outdir / "truth.h5",
        "stars": outdir / "stars.ecsv",
        "preview": outdir / "preview.png",
    }
    write_fits_image(
        paths["reference"], simulation.reference, provenance=provenance, wcs=simulation.reference_wcs,
        header=_image_header(spec, "reference"), unit="electron",
    )
    write_fits_image(
        paths["science"], simulation.science, provenance=provenance, wcs=simulation.science_wcs,
        header=_image_header(spec, "science"), unit="electron",
    )
    transients = simulation.transients
    stamps = cut_stamps(simulation.science, transients["x_sci"], transients["y_sci"], TRUTH_STAMP_SIZE)
    write_product(
        paths["truth"],
        product_type="injection-truth",
        provenance=provenance,
        arrays={"science_stamp": stamps},
        table=transients,
        units={"science_stamp": "electron"},
        descriptions={
            "science_stamp": f"{TRUTH_STAMP_SIZE}x{TRUTH_STAMP_SIZE} science-image stamp centred on the transient",
            "snr": "optimal PSF-photometry S/N in the science image alone",
        },
        attrs={"pair_id": pair_id, "shift_x": simulation.shift[0], "shift_y": simulation.shift[1],
               "rotation_deg": simulation.rotation, **{f"spec.{k}": v for k, v in asdict(spec).items()}},
    )
    write_table(simulation.stars, paths["stars"], provenance=provenance)
    figure = image_panels(
        {"reference": simulation.reference, "science": simulation.science},
        title=f"{pair_id}: simulated pair (circles: injected transients)",
        markers=list(zip(transients["x_sci"], transients["y_sci"], strict=True)),
    )
    save_figure(figure, paths["preview"])
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
