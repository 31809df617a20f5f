"""Subcommands of the data stages: simulate, diffim, cutouts, realbogus, transit, lens, gw.

Each handler builds the stage's options object and run context from the
parsed flags and calls one library function; nothing else happens here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skysift.cli._flags import add_command, add_group, options_from_arguments, run_context
from skysift.context import DaskOptions, RunContext
from skysift.diffim.options import DiffimOptions
from skysift.gw.options import GWOptions
from skysift.lens.options import LensOptions, LensValidationOptions
from skysift.log import get_logger
from skysift.realbogus.options import RealbogusOptions
from skysift.simulate.spec import FieldSpec
from skysift.transit.options import TransitOptions

__all__ = ["register"]

log = get_logger(__name__)


@contextmanager
def dask_context(arguments: argparse.Namespace, rule: str, **recorded: Any) -> Iterator[RunContext]:
    """A run context with the Dask client that ``--cluster``/``--workers`` ask for (closed afterwards)."""
    from skysift.parallel import close_client, get_client

    dask = options_from_arguments(DaskOptions, arguments)
    client = get_client(dask.cluster, n_workers=dask.workers) if dask.cluster != "none" else None
    try:
        yield run_context(arguments, rule, client=client, **recorded)
    finally:
        close_client(client)


def _simulate_pair(arguments: argparse.Namespace) -> int:
    from skysift.simulate.run import run_simulate_pair

    spec = options_from_arguments(FieldSpec, arguments)
    context = run_context(arguments, "simulate_pair", options=(spec,))
    run_simulate_pair(arguments.outdir, spec, seed=arguments.seed, pair_id=context.labels.get("pair_id", "sim"),
                      context=context)
    return 0


def _diffim(arguments: argparse.Namespace) -> int:
    from skysift.diffim.pipeline import run_diffim

    options = options_from_arguments(DiffimOptions, arguments)
    run_diffim(arguments.science, arguments.reference, arguments.outdir,
               science_mask_path=arguments.science_mask, reference_mask_path=arguments.reference_mask,
               options=options, context=run_context(arguments, "diffim", options=(options,)),
               science_noise_path=arguments.science_noise, reference_noise_path=arguments.reference_noise,
               science_weight_path=arguments.science_weight, reference_weight_path=arguments.reference_weight)
    return 0


def _cutouts(arguments: argparse.Namespace) -> int:
    from skysift.cutouts import make_cutouts

    options = options_from_arguments(RealbogusOptions, arguments)
    make_cutouts(arguments.diffim_dir, arguments.science, arguments.out, cutout_size=options.cutout_size,
                 context=run_context(arguments, "cutouts"))  # only cutout_size shapes cutouts
    return 0


def _realbogus_simulate(arguments: argparse.Namespace) -> int:
    from skysift.realbogus.injection import make_realbogus_training_set

    options = options_from_arguments(RealbogusOptions, arguments)
    diffim_options = options_from_arguments(DiffimOptions, arguments)
    with dask_context(arguments, "realbogus_training_set", options=(options, diffim_options)) as context:
        make_realbogus_training_set(
            [tuple(pair) for pair in arguments.pair], arguments.out,
            n_injections_per_image=options.n_injections_per_image, snr_range=(options.snr_min, options.snr_max),
            n_cosmic_rays_per_image=options.n_cosmic_rays, real_fraction=options.real_fraction,
            cutout_size=options.cutout_size, n_repeats=options.n_repeats, seed=arguments.seed,
            detected_only=options.detected_only, diffim_options=diffim_options,
            context=context,
        )
    return 0


def _realbogus_survey_set(arguments: argparse.Namespace) -> int:
    from skysift.errors import ConfigError
    from skysift.realbogus.stamps import StampSettings, make_survey_training_set

    options = options_from_arguments(RealbogusOptions, arguments)
    if options.survey == "simulated":
        raise ConfigError("--survey: survey-set needs a survey preset (ztf); 'simulated' is `realbogus simulate`")
    settings = StampSettings(real_fraction=options.real_fraction, real_background_fraction=options.real_background_fraction,
                             snr_range=(options.snr_min, options.survey_snr_max))
    make_survey_training_set(
        arguments.out, survey=options.survey, n_samples=options.n_survey_samples, seed=arguments.seed,
        settings=settings, real_backgrounds=options.real_backgrounds, exclude_objects=arguments.exclude_objects,
        context=run_context(arguments, "realbogus_training_set", options=(options,)),
    )
    return 0


def _realbogus_evaluate(arguments: argparse.Namespace) -> int:
    from skysift.realbogus.evaluate import evaluate_alerts

    outdir = Path(arguments.outdir)
    summary = evaluate_alerts(
        arguments.model, arguments.alerts, outdir / "alerts_evaluation.ecsv", outdir / "alerts_evaluation.json",
        outdir / "alerts_evaluation.png", training_set=arguments.product,
        context=run_context(arguments, "evaluate_ztf_alerts"),
    )
    print(f"AUC vs rb>=0.5: {summary['auc_rb']:.3f} (n={summary['n']}); ZTF-real scored real: "
          f"{summary['fraction_real_of_ztf_real']:.3f} (n={summary['n_ztf_real']}); "
          f"{summary['n_left_out_as_training_backgrounds']} left out as training backgrounds")
    return 0


def _realbogus_score(arguments: argparse.Namespace) -> int:
    from skysift.io import read_table
    from skysift.realbogus.ztf import run_score_alerts

    run_score_alerts(arguments.model, arguments.alerts, arguments.out, context=run_context(arguments, "score_ztf_alerts"))
    table = read_table(arguments.out)
    columns = [c for c in ("source_file", "objectId", "candid", "score", "rb", "drb", "flag") if c in table.colnames]
    table[columns].pprint(max_lines=60, max_width=160)
    for key in ("spearman_drb", "spearman_rb"):
        if key in table.meta:
            print(f"{key}: {table.meta[key]}")
    return 0


def _transit_simulate(arguments: argparse.Namespace) -> int:
    from skysift.transit.dataset import make_transit_training_set

    options = options_from_arguments(TransitOptions, arguments)
    with dask_context(arguments, "transit_training_set", options=(options,)) as context:
        make_transit_training_set(
            arguments.out, options.n_samples, seed=arguments.seed, mission=options.mission, n_blocks=options.n_blocks,
            positive_fraction=options.positive_fraction, chunk_size=options.chunk_size, context=context,
        )
    return 0


def _transit_score(arguments: argparse.Namespace) -> int:
    from skysift.io import write_table
    from skysift.train.trainer import load_model
    from skysift.transit.scoring import score_request

    model, _ = load_model(arguments.model, task="transit")
    table, inputs = score_request(
        model, lightcurve=arguments.lightcurve, period=arguments.period, t0=arguments.t0, duration=arguments.duration,
        folded=arguments.folded, tce_table=arguments.tce_table, lightcurve_dir=arguments.lightcurve_dir,
        limit=arguments.limit,
    )
    if arguments.out is not None:
        provenance = run_context(arguments, "transit_score").provenance(inputs=[Path(arguments.model) / "model.pt", *inputs])
        write_table(table, arguments.out, provenance=provenance)
    table.pprint(max_lines=40, max_width=140)
    return 0


def _lens_simulate(arguments: argparse.Namespace) -> int:
    from skysift.lens.dataset import make_lens_training_set, parse_negative_mix

    options = options_from_arguments(LensOptions, arguments)
    make_lens_training_set(
        arguments.out, options.n_samples, survey=options.survey, image_size=options.image_size,
        supersampling=options.supersampling, positive_fraction=options.positive_fraction, galaxies=options.galaxies,
        seed=arguments.seed, device=options.device, batch_size=options.simulation_batch,
        conditions=options.conditions, negative_mix=parse_negative_mix(options.negative_mix),
        source_catalogue=options.source_catalogue or None, bands=tuple(options.bands),
        context=run_context(arguments, "lens_training_set", options=(options,)),
    )
    return 0


def _lens_validation_set(arguments: argparse.Namespace) -> int:
    from skysift.lens.independent import make_validation_set
    from skysift.parallel import usable_cores

    options = options_from_arguments(LensValidationOptions, arguments)
    make_validation_set(
        arguments.out, n_lenses=options.n_lenses, n_lookalikes=options.n_lookalikes, seed=arguments.seed,
        image_size=options.image_size, supersampling=options.supersampling, min_arc_snr=options.min_arc_snr,
        workers=options.workers or usable_cores(),
        context=run_context(arguments, "lens_validation_set", options=(options,)),
    )
    return 0


def _lens_validation_report(arguments: argparse.Namespace) -> int:
    from skysift.lens.validation import evaluate_validation

    metrics = evaluate_validation(arguments.scores, arguments.product, arguments.outdir)
    log.info("independent validation: AUC %.4f, TPR %.3f at FPR 1%% (%d lenses, %d look-alikes)", metrics["auc"],
             metrics["tpr_at_fpr_0.01"], metrics["n_lenses"], metrics["n_lookalikes"])
    return 0


def _gw_simulate(arguments: argparse.Namespace) -> int:
    from skysift.gw.dataset import make_gw_training_set
    from skysift.gw.noise import psd_files_in
    from skysift.simulate.priors import Uniform

    options = options_from_arguments(GWOptions, arguments)
    psd_files = psd_files_in(options.psd_dir) if options.psd_dir else None
    with dask_context(arguments, "gw_training_set", options=(options,)) as context:
        make_gw_training_set(
            arguments.out, options.n_samples, approximant=options.approximant, sample_rate=options.sample_rate,
            duration=options.duration, snr_prior=Uniform(options.snr_min, options.snr_max),
            mass_range=(options.mass_min, options.mass_max), seed=arguments.seed,
            signal_fraction=options.signal_fraction, spin_max=options.spin_max, psd_files=psd_files, context=context,
        )
    return 0


def _gw_testdata(arguments: argparse.Namespace) -> int:
    from skysift.gw.mlgwsc import make_mlgwsc_test_data

    options = options_from_arguments(GWOptions, arguments)
    outdir = Path(arguments.outdir)
    make_mlgwsc_test_data(
        outdir / "foreground.hdf", outdir / "background.hdf", outdir / "injections.hdf",
        duration=options.test_duration, seed=arguments.seed, approximant=options.approximant,
        mass_range=(options.mass_min, options.mass_max), spin_max=options.spin_max, max_distance=options.max_distance,
        context=run_context(arguments, "gw_test_data", options=(options,)),
    )
    return 0


def _gw_search(arguments: argparse.Namespace) -> int:
    from skysift.errors import InputDataError

    options = options_from_arguments(GWOptions, arguments)
    if (arguments.model is None) == (not arguments.matched_filter):
        raise InputDataError("give either --model DIR or --matched-filter")
    from skysift.gw.search import is_mlgwsc_strain

    # MLGWSC-1 test data come with a background file: time slides are for real strain.
    n_slides = 0 if is_mlgwsc_strain(arguments.strain) else options.n_slides
    real = dict(sample_rate=options.sample_rate, gate_threshold=options.gate_threshold, n_slides=n_slides,
                triggers_path=arguments.catalogue)
    if arguments.matched_filter:
        from skysift.gw.matched_filter import matched_filter_search, template_bank

        mass_range = (options.mass_min, options.mass_max)
        bank = template_bank(mass_range, n_chirp_mass=options.bank_chirp_masses, n_mass_ratio=options.bank_mass_ratios)
        matched_filter_search(arguments.strain, arguments.out, mass_range=mass_range, bank=bank, **real,
                              context=run_context(arguments, "gw_matched_filter", options=(options,)))
        return 0
    from skysift.gw.search import run_search, torch_scorer
    from skysift.train.trainer import load_model

    model, _ = load_model(arguments.model, task="gw")
    run_search(arguments.strain, arguments.out, torch_scorer(model), step=options.search_step, edge=options.search_edge, **real,
               context=run_context(arguments, "gw_search", options=(options,)))
    return 0


def _gw_evaluate(arguments: argparse.Namespace) -> int:
    from skysift.gw.evaluate import evaluate_searches, plot_sensitivity
    from skysift.io import atomic_output, save_figure

    options = options_from_arguments(GWOptions, arguments)
    searches = {name: (foreground, background) for name, foreground, background in arguments.search}
    curves = evaluate_searches(searches, arguments.injections, arguments.background_strain,
                               max_distance=options.max_distance)
    summary = {name: curve.summary() for name, curve in curves.items()}
    outdir = Path(arguments.outdir)
    with atomic_output(outdir / "sensitivity.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2, default=float))
    save_figure(plot_sensitivity(curves), outdir / "sensitivity.png")
    for name, values in summary.items():
        log.info("%s: %s", name, ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the stage subcommands to the ``skysift`` parser."""
    simulate = add_group(commands, "simulate", "simulated inputs with known truth",
                      "Simulate inputs whose truth is known, for the demo and for tests.")
    add_command(
        simulate, "pair", _simulate_pair, flags=("--outdir", "--seed"), options=(FieldSpec,), provenance=True,
        help="simulate a reference/science star-field pair with transients",
        description="Simulate a reference and a science image of one field (different PSFs, pointing, sky, "
        "transients) with WCS; writes reference.fits, science.fits, truth.h5, stars.ecsv and preview.png.",
    )
    add_command(
        commands, "diffim", _diffim, options=(DiffimOptions,), provenance=True,
        flags=("--science", "--reference", "--science-mask", "--reference-mask", "--science-noise", "--reference-noise",
               "--science-weight", "--reference-weight", "--outdir"),
        help="ZOGY image differencing and candidate detection of one pair",
        description="Register the reference to the science WCS, estimate backgrounds, PSFs and the flux scale, "
        "subtract with ZOGY and detect candidates on S_corr. Writes difference.fits, scorr.fits, fpsf.fits, "
        "fpsf_err.fits, aligned_reference.fits, candidates.ecsv and preview.png, all or none.",
    )
    add_command(
        commands, "cutouts", _cutouts, flags=("--diffim-dir", "--science", "--out"), options=(RealbogusOptions,),
        only={RealbogusOptions: ("cutout_size",)}, provenance=True, overrides={"out": {"help": "output HDF5 product"}},
        help="science/reference/difference triplets around every candidate -> HDF5",
        description="Cut science, aligned-reference and difference stamps around every candidate of a diffim run "
        "(stamps crossing an edge are padded and masked) and write a cutouts HDF5 product.",
    )
    realbogus = add_group(commands, "realbogus", "real/bogus training sets and scoring of alert packets",
                       "Real/bogus classification of difference-image candidates (braai-like).")
    add_command(
        realbogus, "simulate", _realbogus_simulate, flags=("--pair", "--out", "--seed"),
        options=(RealbogusOptions, DiffimOptions, DaskOptions), provenance=True,
        help="inject point sources into FITS pairs, difference them and cut labelled triplets",
        description="Inject PSF-shaped point sources (real) and cosmic rays (bogus) into science images, run the "
        "ZOGY differencing, and cut labelled triplets at the candidates into a realbogus-training-set product.",
    )
    add_command(
        realbogus, "survey-set", _realbogus_survey_set, flags=("--out", "--seed", "--exclude-objects"),
        options=(RealbogusOptions,),
        only={RealbogusOptions: ("survey", "n_survey_samples", "snr_min", "survey_snr_max", "real_fraction",
                                 "real_backgrounds", "real_background_fraction")},
        provenance=True, overrides={"out": {"help": "output HDF5 product"}},
        help="survey-like alert triplets (ZTF preset), simulated or on real alert stamps -> HDF5 product",
        description="Training set in a survey's own alert-stamp terms (skysift.realbogus.stamps): point sources and "
        "artefact families (dipoles, PSF-mismatch, spikes, ghosts, cosmic rays, hot pixels, bad columns, edges) "
        "on simulated survey backgrounds or on real alert stamps.",
    )
    add_command(
        realbogus, "evaluate", _realbogus_evaluate, flags=("--model", "--alerts", "--product", "--outdir"),
        provenance=True,
        overrides={"alerts": {"action": "append", "help": "a directory of .avro alert packets (repeat for more)"},
                   "product": {"required": False, "default": None,
                               "help": "the model's training product: alerts it used as backgrounds are left out"}},
        help="agreement with ZTF's rb/drb on real alert packets: table, JSON summary, figure",
        description="Score real alert packets and compare with ZTF's rb/drb: OUTDIR/alerts_evaluation.ecsv, .json "
        "and .png (ROC against rb >= 0.5, score against rb). Alerts whose stamps were training backgrounds are left out.",
    )
    add_command(
        realbogus, "score", _realbogus_score, flags=("--model", "--alerts", "--out"), provenance=True,
        overrides={"out": {"help": "output ECSV table"}},
        help="score ZTF Avro alert packets with a trained real/bogus model",
        description="Read the science/template/difference stamps of ZTF alert packets, score them, and write a "
        "table with ZTF's rb/drb beside the score (and their rank correlations).",
    )
    transit = add_group(commands, "transit", "transit training sets and scoring of real light curves",
                     "Planetary transits as AstroNet (Shallue & Vanderburg 2018).")
    add_command(
        transit, "simulate", _transit_simulate, flags=("--out", "--seed"), options=(TransitOptions, DaskOptions),
        provenance=True, help="simulated light curves with injected transits and negatives -> views product",
        description="Simulate stars, inject Mandel-Agol transits (label 1) or eclipsing binaries, blends and "
        "systematics (label 0), detrend, fold and bin into AstroNet views; Dask-parallel over chunks.",
    )
    add_command(
        transit, "score", _transit_score, provenance=True,
        flags=("--model", "--lightcurve", "--period", "--t0", "--duration", "--folded", "--tce-table",
               "--lightcurve-dir", "--limit", "--out"),
        overrides={"out": {"required": False, "default": None, "help": "write the scores as ECSV"}},
        help="score a light-curve file, a folded curve or a TCE table with a trained model",
        description="Score real light curves with a trained transit model: one light-curve FITS file with its "
        "ephemeris, a phase-folded curve, or every TCE of a table whose light curves are in a directory.",
    )
    lens = add_group(commands, "lens", "strong-lens training sets and the independent validation set", "Strong-lens finding (Petrillo et al.; CMU DeepLens).")
    add_command(
        lens, "simulate", _lens_simulate, flags=("--out", "--seed"), options=(LensOptions,), provenance=True,
        help="simulate a lens-finding training set -> HDF5 product",
        description="Simulate SIE + shear lenses of Sersic sources around simulated or real galaxies, with survey "
        "PSF and noise, plus negatives, with the batched PyTorch simulator (CPU or GPU).",
    )
    add_command(
        lens, "validation-set", _lens_validation_set, flags=("--out", "--seed"), options=(LensValidationOptions,),
        provenance=True, help="independent lens validation set drawn with lenstronomy -> HDF5 lens product",
        description="Draw lenses (SIE + shear, arcs' S/N >= min-arc-snr) and labelled look-alikes (arclets outside "
        "the caustic, rings, companions, spirals, mergers, edge-on discs, star blends) with lenstronomy only, "
        "LSST-like r band, as a lens product that skysift score reads unchanged.",
    )
    add_command(
        lens, "validation-report", _lens_validation_report, flags=("--scores", "--product", "--outdir"),
        overrides={"product": {"help": "the validation set that was scored (for the gallery)"}},
        help="metrics, per-family and per-S/N tables and figures of a scored validation set",
        description="From skysift score's output on a validation set: OUTDIR/metrics.json (AUC, TPR at FPR 1%% with "
        "the threshold set on the look-alikes), families.ecsv, snr_bins.ecsv, roc.png, families.png and gallery.png "
        "(the highest-scoring look-alikes).",
    )
    gw = add_group(commands, "gw", "gravitational-wave training sets, MLGWSC-1 data, searches and evaluation",
                "Compact-binary detection on H1/L1 strain (needs skysift[gw] for waveforms).")
    add_command(
        gw, "simulate", _gw_simulate, flags=("--out", "--seed"), options=(GWOptions, DaskOptions), provenance=True,
        help="whitened H1/L1 samples with and without injected signals -> HDF5 product",
        description="Simulate coloured Gaussian H1/L1 noise, inject IMRPhenom waveforms at network SNRs from the "
        "prior, whiten and band-pass; writes a gw-training-set product.",
    )
    add_command(
        gw, "testdata", _gw_testdata, flags=("--outdir", "--seed"), options=(GWOptions,), provenance=True,
        help="MLGWSC-1 foreground, background and injections files",
        description="Write MLGWSC-1 style test data: foreground strain with injections every 24 +- 3 s, "
        "background strain without, and the injections file.",
    )
    add_command(
        gw, "search", _gw_search, flags=("--strain", "--out", "--catalogue", "--model", "--matched-filter"),
        options=(GWOptions,),
        only={GWOptions: ("search_step", "mass_min", "mass_max", "bank_chirp_masses", "bank_mass_ratios", "sample_rate",
                          "search_edge", "gate_threshold", "n_slides")},
        provenance=True,
        overrides={"model": {"required": False, "default": None}, "out": {"help": "events file (MLGWSC-1)"},
                   "catalogue": {"help": "also write the trigger table as ECSV: time, stat, FAR, n_louder, in_edge, gated"}},
        help="search MLGWSC-1 or GWOSC strain with a trained network or the matched filter -> events",
        description="Condition the strain (high-pass, median-Welch PSD, truncated whitening, taper, autogating), slide "
        "a trained network over it (or run the matched-filter baseline), and write clustered triggers outside the "
        "segments' edges as an MLGWSC-1 events file; with --n-slides, FARs from time slides in the trigger table.",
    )
    add_command(
        gw, "evaluate", _gw_evaluate, flags=("--search", "--injections", "--background-strain", "--outdir"),
        options=(GWOptions,), only={GWOptions: ("max_distance",)},
        help="sensitive distance against false-alarm rate (MLGWSC-1 definitions)",
        description="Evaluate searches as MLGWSC-1 does: writes OUTDIR/sensitivity.json and sensitivity.png.",
    )
