# Helpers shared by all rule files (configuration validation, paths, seeds) and
# the command that calls the skysift CLI. Rules stay thin and call `skysift`.

import inspect
import json
import shlex
import sys
from pathlib import Path

SRC_DIR = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC_DIR))

from skysift.config import derive_seed, load_schema, options_sections, read_pairs_table, validate_config  # noqa: E402
from skysift.options import option_params  # noqa: E402
from skysift.errors import ConfigError  # noqa: E402
from skysift.codedigest import CodeDigestCache  # noqa: E402
from skysift.provenance import config_hash  # noqa: E402
from skysift.releases import (  # noqa: E402
    DigestCache,
    check_inputs,
    export_run_labels,
    pair_fingerprint,
    read_release,
    release_labels,
    simulated_pair_ids as numbered_simulated_pairs,
    withdrawn_pairs,
)

SCHEMA_PATH = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    _validated = validate_config(
        config, load_schema(SCHEMA_PATH), base_dir=Path.cwd(), source="configuration (" + ", ".join(map(str, workflow.configfiles)) + " + --config)"
    )
except ConfigError as error:
    sys.stderr.write(f"skysift: {error}\n")
    raise SystemExit(1)
config.clear()
config.update(_validated)

RESULTS = Path(config["results_dir"]).as_posix()
LOGS = f"{RESULTS}/logs"  # per run: two runs with different results_dir never share a log
CONFIG_HASH = config_hash(config)
# Rules run `python -m skysift` from this checkout's source tree, so a job uses
# the code of the checkout that scheduled it. The interpreter is the one running
# Snakemake (`.venv/bin/snakemake` works without an activated venv), or the
# rule's own conda env's `python` when Snakemake deploys conda envs.
try:
    from snakemake.settings.types import DeploymentMethod

    _USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
except (ImportError, AttributeError):
    _USES_CONDA = False
PYTHON = "python" if _USES_CONDA else shlex.quote(sys.executable)
SKYSIFT_CLI = f"PYTHONPATH={SRC_DIR}${{PYTHONPATH:+:$PYTHONPATH}} {PYTHON} -m skysift"
MODEL_TASKS = ("realbogus", "transit", "lens", "gw")  # each with a `skysift.<task>.task` module
# Workflow state beside Snakemake's own (input digests, code digests), per working directory.
STATE_DIR = Path(".snakemake") / "skysift"
# Cluster jobs parse this file again (Snakemake submits itself): what the main process checked
# once for the whole run (inputs against their manifest, withdrawn pairs) is not redone per job.
MAIN_PROCESS = workflow.is_main_process


def job_function(function):
    """A function Snakemake calls per job (input or params), with its signature taken once.

    Snakemake inspects the signature of every input and parameter function each time it
    calls one (about 20 us, twice per call: several times per job); `inspect.signature`
    returns a function's `__signature__` when it has one, so the work is done here once.
    """
    function.__signature__ = inspect.signature(function)
    return function


_CODE_DIGESTS = CodeDigestCache(STATE_DIR / "code_digests.json", SRC_DIR)


def code_version(*entries):
    """Digest of the code a rule's command runs (`skysift.codedigest.code_digest`).

    `entries` are the CLI handler (`"skysift.cli.stages:_diffim"`) and any
    module found at run time (a task's `skysift.<task>.task`); the digest
    follows their imports, ignoring comments, docstrings and help texts. A rule
    parameter, so editing the library reruns exactly the jobs that run the
    edited code (Snakemake does not track imported modules). Cached in
    `.snakemake/skysift/code_digests.json` while no source file changes.
    """
    return _CODE_DIGESTS.digest(entries)


def section_hash(*keys):
    """sha256 of the configuration sections a job uses (dotted keys, e.g. "train.lens").

    Jobs record this rather than the hash of the whole configuration, so that
    changing one stage's settings (or the data release) leaves the parameters,
    and hence the results, of every other job untouched.
    """
    selected = {}
    for key in ("seed", *keys):
        value = config
        for part in key.split("."):
            value = value[part]
        selected[key] = value
    return config_hash(selected)


def provenance_flags(rule_name, *sections):
    """Command-line flags that stamp a product with its rule and the hash of its config sections."""
    return f"--rule {rule_name} --config-hash {section_hash(*sections)}"


def cli_flags(options):
    """Turn a mapping of parameters into `--key-name value` flags (None: leave the default; a list: its values)."""

    def text(value):
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (list, tuple)):
            return " ".join(shlex.quote(str(item)) for item in value)
        return shlex.quote(str(value))

    return " ".join(f"--{key.replace('_', '-')} {text(value)}".rstrip() for key, value in options.items() if value is not None)


OPTIONS = options_sections(SCHEMA_PATH)


def stage_flags(section, keys=None, values=None):
    """`skysift` flags of a configuration section's command-line parameters.

    The flags are named as the keys (`diffim.psf_grid` -> `--psf-grid`); keys
    only the workflow reads (`enabled`, `n_pairs`...) have none. `keys` picks
    some; `values` overrides the section's values (same keys).
    """
    current = config
    for part in section.split("."):
        current = current[part]
    current = {**current, **(values or {})}
    classes = OPTIONS["train.<task>"] if section.startswith("train.") else OPTIONS[section]
    selected = {}
    for cls in classes:
        for item, spec in option_params(cls):
            if spec.cli and spec.config and (keys is None or item.name in keys):
                selected[item.name] = current[item.name]
    return cli_flags(selected)


def simulated_pair_ids():
    """Identifiers of the pairs the demo simulates (sim00, sim01, ...)."""
    return numbered_simulated_pairs(config["simulate"]["pairs"]["n_pairs"])


def realbogus_training_pair_ids():
    """Simulated pairs without transients that host the real/bogus injections (rb00, ...)."""
    if not config["realbogus"]["enabled"] or config["realbogus"]["survey"] != "simulated":
        return []
    return [f"rb{index:02d}" for index in range(config["realbogus"]["n_training_pairs"])]


def table_pairs():
    """Pairs of the pairs table and of the selected data release (empty if neither)."""
    pairs = {}
    sources = [("pairs table", config["inputs"]["pairs_table"], read_pairs_table)]
    sources.append(("release", config["release"], read_release))
    for label, path, reader in sources:
        if not path:
            continue
        try:
            rows = reader(path, base_dir=Path.cwd())
        except ConfigError as error:
            sys.stderr.write(f"skysift: {error}\n")
            raise SystemExit(1)
        rows = rows.values() if isinstance(rows, dict) else rows
        for row in rows:
            if row["pair_id"] in pairs:
                sys.stderr.write(f"skysift: pair {row['pair_id']!r} of the {label} {path} is listed twice\n")
                raise SystemExit(1)
            pairs[row["pair_id"]] = row
    return pairs


_FINGERPRINTS = {}


@job_function
def pair_checksums(wildcards):
    """Content digests of a pair's inputs: a parameter, so a job reruns when the content of an
    input changes, not its path or modification time (a new release reruns exactly the changed pairs).

    Taken once per pair and run from the digests `verify_inputs` took (no file is read or stat'ed
    per job); a cluster job, which does not verify, takes only its own pair's.
    """
    return pair_checksum(wildcards.pair)


def pair_checksum(pair):
    """`pair_checksums` of one pair id (batch jobs take it per pair of the batch)."""
    if pair not in _FINGERPRINTS:
        row = TABLE_PAIRS.get(pair)
        _FINGERPRINTS[pair] = pair_fingerprint(row, DIGESTS) if row is not None else "simulated"
    return _FINGERPRINTS[pair]


def release_name():
    return Path(config["release"]).stem if config["release"] else ""


def verify_inputs():
    """Every input of the pairs table and release against its declared sha256, before any job.

    Digests are cached by path, size, inode, mtime and ctime (`.snakemake/skysift/digests.json`);
    `rehash_inputs: true` hashes every file again.
    """
    problems = check_inputs(TABLE_PAIRS.values(), DIGESTS, source=config["release"] or config["inputs"]["pairs_table"] or "")
    if problems:
        for problem in problems:
            sys.stderr.write(f"skysift: {problem}\n")
        sys.stderr.write("skysift: inputs do not match their manifest; nothing was run\n")
        raise SystemExit(1)


TABLE_PAIRS = table_pairs()
DIGESTS = DigestCache(STATE_DIR / "digests.json", rehash=config["rehash_inputs"])
if MAIN_PROCESS:
    verify_inputs()
# Provenance labels of the whole run (release name, manifest sha256), read by every `skysift`
# command: exported to the jobs' environment rather than passed as flags, so that a new
# release does not change the command line, hence the rerun triggers, of unchanged jobs.
export_run_labels(release_labels(config["release"]))


def pair_seed(pair_id):
    return derive_seed(config["seed"], "simulate_pair", pair_id)


def simulation_flags(pair_id="sim00"):
    """Field parameters for `skysift simulate pair`, from config simulate.pairs.

    Real/bogus training pairs (rb*) have no transients: every candidate found on
    them before injection is an artefact, so the bogus class is clean.
    """
    return stage_flags("simulate.pairs", values={"n_transients": 0} if pair_id.startswith("rb") else None)


def pair_ids():
    """Every pair that is differenced: simulated ones, then those of the pairs table."""
    return simulated_pair_ids() + list(TABLE_PAIRS)


PAIRS_PER_JOB = config["inputs"]["pairs_per_job"]


def single_pair_ids():
    """Pairs whose per-pair stages run one job each: the simulated ones, and the table's unless batched."""
    return simulated_pair_ids() + ([] if PAIRS_PER_JOB > 1 else list(TABLE_PAIRS))


def pair_batches():
    """Batches of the table's pairs (`inputs.pairs_per_job` > 1): batch id -> pair ids, in table order.

    Pairs keep their batch while a release only appends pairs; when a batch's pairs change
    anyway, `skysift batch` redoes only the pairs whose inputs changed (per-pair stamps).
    """
    if PAIRS_PER_JOB == 1:
        return {}
    ids = list(TABLE_PAIRS)
    return {f"b{start // PAIRS_PER_JOB:05d}": ids[start:start + PAIRS_PER_JOB] for start in range(0, len(ids), PAIRS_PER_JOB)}


PAIR_BATCHES = pair_batches()


def report_withdrawn():
    """Pairs with products here that this run no longer lists (a release withdrew them)."""
    withdrawn = withdrawn_pairs(RESULTS, pair_ids())
    if withdrawn:
        source = f"release {release_name()}" if config["release"] else "this run's pairs"
        sys.stderr.write(
            f"skysift: pair(s) {', '.join(withdrawn)} have products in {RESULTS} but are not in {source}: "
            f"withdrawn; their products are moved to {RESULTS}/withdrawn/{release_name() or 'no-release'}/ "
            "when the run starts\n"
        )
    return withdrawn


def withdraw_on_start():
    """Move the products of withdrawn pairs aside, so that nothing in results/ looks current but is not."""
    from skysift.releases import withdraw_products

    for path in withdraw_products(RESULTS, WITHDRAWN, release_name()):
        sys.stderr.write(f"skysift: moved withdrawn product to {path}\n")


WITHDRAWN = report_withdrawn() if MAIN_PROCESS else []
#: Optional per-pair inputs of `skysift diffim`, each passed as --<column with dashes>.
OPTIONAL_PAIR_INPUTS = (
    "science_mask", "reference_mask", "science_noise", "reference_noise", "science_weight", "reference_weight",
)


_PAIR_PATHS = {}


def pair_paths(pair_id):
    """Science, reference and the optional inputs of one pair (simulated or from the table/release)."""
    if pair_id not in _PAIR_PATHS:  # several parameters of several jobs ask for each pair's
        if pair_id in TABLE_PAIRS:
            row = TABLE_PAIRS[pair_id]
            paths = {key: str(row[key]) for key in ("science", "reference", *OPTIONAL_PAIR_INPUTS) if row[key]}
        else:
            paths = {
                "science": f"{RESULTS}/simulate/{pair_id}/science.fits",
                "reference": f"{RESULTS}/simulate/{pair_id}/reference.fits",
            }
        _PAIR_PATHS[pair_id] = paths
    return _PAIR_PATHS[pair_id]


@job_function
def pair_inputs(wildcards):
    """Snakemake inputs of a pair's jobs: the simulated images, which rules make.

    The files of a pairs table or release are not Snakemake inputs: their content
    digests are a job parameter (`pair_checksums`) and they were verified before the
    DAG was built, so copying an unchanged file to a new path (a new input path,
    a new mtime) reruns nothing, and an edit with its mtime set back is still seen.
    """
    return {} if wildcards.pair in TABLE_PAIRS else pair_paths(wildcards.pair)


@job_function
def pair_science_input(wildcards):
    """Snakemake inputs of a pair's cutouts: its simulated science image, which a rule makes."""
    return {key: path for key, path in pair_inputs(wildcards).items() if key == "science"}


def pair_file(kind):
    """Parameter function: the path of one input of the job's pair.

    It takes `input` (unused), so Snakemake counts it as derived from the inputs
    and leaves it out of the params rerun trigger: a path is not content. The
    content digests (`pair_checksums`) are the parameter that reruns a job.
    """
    return job_function(lambda wildcards, input: pair_paths(wildcards.pair)[kind])


@job_function
def mask_flags(wildcards, input):  # derived from the inputs, as pair_file
    """CLI flags of a pair's optional inputs: masks, noise and weight maps."""
    return shlex.join(optional_input_args(wildcards.pair))


def optional_input_args(pair):
    """`skysift diffim` arguments of a pair's optional inputs (single-pair jobs and batch plans)."""
    paths = pair_paths(pair)
    args = []
    for kind in OPTIONAL_PAIR_INPUTS:
        if kind in paths:
            args += [f"--{kind.replace('_', '-')}", paths[kind]]
    return args


DIFFIM_PRODUCTS = ("difference.fits", "scorr.fits", "fpsf.fits", "fpsf_err.fits", "aligned_reference.fits", "candidates.ecsv")


def batch_records(stage):
    """Records of a per-pair stage's batch jobs (they stand for their pairs' products)."""
    return expand(f"{RESULTS}/batches/{stage}/{{batch}}.json", batch=list(PAIR_BATCHES))


def diffim_products():
    products = expand(f"{RESULTS}/diffim/{{pair}}/{{product}}", pair=single_pair_ids(), product=DIFFIM_PRODUCTS)
    return products + batch_records("diffim")


def realbogus_products():
    if not config["realbogus"]["enabled"]:
        return []
    products = expand(f"{RESULTS}/cutouts/{{pair}}/cutouts.h5", pair=single_pair_ids())
    products += expand(f"{RESULTS}/realbogus/candidates/{{pair}}.h5", pair=single_pair_ids())
    products += expand(f"{RESULTS}/realbogus/candidates/{{pair}}.ecsv", pair=single_pair_ids())
    products += batch_records("cutouts") + batch_records("score_candidates")
    if config["realbogus"]["ztf_alerts"]:
        products.append(f"{RESULTS}/realbogus/ztf_scores.ecsv")
    if config["realbogus"]["evaluation_alerts"]:
        products.append(f"{RESULTS}/realbogus/alerts_evaluation.png")
    return products


def simulated_products():
    return expand(
        f"{RESULTS}/simulate/{{pair}}/{{product}}",
        pair=simulated_pair_ids() + realbogus_training_pair_ids(),
        product=["reference.fits", "science.fits", "truth.h5", "stars.ecsv"],
    )


def enabled_tasks():
    """Model tasks switched on in the configuration."""
    return [task for task in MODEL_TASKS if config[task]["enabled"]]


def train_settings(task):
    return config["train"][task]


def train_flags(task):
    """`skysift train` options for a task (model keyword arguments as JSON)."""
    settings = train_settings(task)
    flags = stage_flags(f"train.{task}")
    flags += f" --seed {derive_seed(config['seed'], 'train', task)}"
    if settings["model"]:
        flags += f" --model-json {shlex.quote(json.dumps(settings['model'], sort_keys=True))}"
    return flags


def train_launcher(wildcards):
    """Several GPUs: DDP through `skysift launch` (srun under SLURM, torchrun elsewhere)."""
    gpus = train_settings(wildcards.task)["gpus"]
    return f"launch --nproc {gpus} -- train" if gpus > 1 else "train"


def dask_flags():
    return stage_flags("dask")


def model_products():
    """Trained models, their scores and evaluations (per enabled task)."""
    products = []
    for task in enabled_tasks():
        products += [
            f"{RESULTS}/{task}/training_set.h5",
            f"{RESULTS}/{task}/scores_test.h5",
            f"{RESULTS}/{task}/candidates_test.ecsv",
        ]
    return products


def lens_validation_enabled():
    """The independent lens validation set is built and scored (it needs the trained lens model)."""
    return config["lens"]["enabled"] and config["lens_validation"]["enabled"]


def lens_validation_products():
    if not lens_validation_enabled():
        return []
    return [f"{RESULTS}/lens/validation/validation_set.h5", f"{RESULTS}/lens/validation/scores.h5"]


def all_products():
    """Every data product of the run, for the provenance summary."""
    return (simulated_products() + diffim_products() + realbogus_products() + model_products()
            + lens_validation_products())


def all_targets():
    targets = expand(f"{RESULTS}/simulate/{{pair}}/preview.png", pair=simulated_pair_ids())
    targets += expand(f"{RESULTS}/simulate/{{pair}}/preview.png", pair=realbogus_training_pair_ids())
    targets += expand(f"{RESULTS}/diffim/{{pair}}/preview.png", pair=single_pair_ids())
    targets += batch_records("diffim")
    targets += realbogus_products()
    for task in enabled_tasks():
        targets += [
            f"{RESULTS}/models/{task}/training_curve.png",
            f"{RESULTS}/{task}/evaluation/roc.png",
            f"{RESULTS}/{task}/evaluation/gallery.png",
        ]
    if enabled_tasks():
        targets.append(f"{RESULTS}/evaluation/metrics.html")
    if lens_validation_enabled():
        targets += [
            f"{RESULTS}/lens/validation/{name}"
            for name in ("metrics.json", "families.ecsv", "snr_bins.ecsv", "roc.png", "families.png", "gallery.png")
        ]
    if config["gw"]["enabled"]:
        targets += [f"{RESULTS}/gw/sensitivity.png", f"{RESULTS}/gw/sensitivity.json"]
    targets += [f"{RESULTS}/provenance/summary.json", f"{RESULTS}/provenance/summary.html"]
    targets += [f"{RESULTS}/provenance/prov.json", f"{RESULTS}/provenance/ivoa_provenance.json"]
    return targets


# --- batch jobs of the per-pair stages (inputs.pairs_per_job > 1) ----------------------------
# One `skysift batch` job per batch of pairs, from a plan (JSON) of the stage's shared command
# and each pair's own arguments: skysift.batch. Each pair's key is what the single-pair rule's
# rerun triggers hold (the content digests of its inputs, the code); the paths are not a trigger
# (the plan is derived from the inputs), as for single-pair jobs.


def batch_stamp(stage, pair):
    """Where `skysift batch` records the fingerprint a pair's products of a stage were made under."""
    if stage == "score_candidates":
        return f"{RESULTS}/realbogus/candidates/.{pair}.batch-stamp.json"
    return f"{RESULTS}/{stage}/{pair}/.batch-stamp.json"


def _batch_plan(command, jobs, inputs=()):
    plan = {"command": shlex.split(" ".join(command)), "inputs": list(inputs), "jobs": jobs}
    return shlex.quote(json.dumps(plan, separators=(",", ":")))


@job_function
def batch_checksums(wildcards):
    """Rerun trigger of a batch: its pairs and their input digests."""
    return " ".join(f"{pair}={pair_checksum(pair)}" for pair in PAIR_BATCHES[wildcards.batch])


def batch_runtime(minutes_per_pair):
    """SLURM runtime (minutes) of a batch job: a few minutes to start, then per pair."""
    return job_function(lambda wildcards: 10 + minutes_per_pair * len(PAIR_BATCHES[wildcards.batch]))


def _pair_job(stage, pair, args, key, outputs, inputs=()):
    return {"name": pair, "args": args, "key": key, "outputs": outputs, "stamp": batch_stamp(stage, pair),
            "inputs": list(inputs), "log": f"{LOGS}/{stage}/{pair}.log"}


@job_function
def diffim_batch_plan(wildcards, input):  # derived from the inputs: paths are not a trigger
    code = code_version("skysift.cli.stages:_diffim")
    jobs = []
    for pair in PAIR_BATCHES[wildcards.batch]:
        paths = pair_paths(pair)
        outdir = f"{RESULTS}/diffim/{pair}"
        args = ["--science", paths["science"], "--reference", paths["reference"], *optional_input_args(pair),
                "--outdir", outdir, "--label", f"pair_id={pair}"]
        outputs = [f"{outdir}/{product}" for product in (*DIFFIM_PRODUCTS, "preview.png")]
        jobs.append(_pair_job("diffim", pair, args, f"{code}|{pair_checksum(pair)}", outputs))
    return _batch_plan(["diffim", stage_flags("diffim"), provenance_flags("diffim", "diffim")], jobs)


@job_function
def cutouts_batch_plan(wildcards, input):
    code = code_version("skysift.cli.stages:_cutouts")
    jobs = []
    for pair in PAIR_BATCHES[wildcards.batch]:
        out = f"{RESULTS}/cutouts/{pair}/cutouts.h5"
        args = ["--diffim-dir", f"{RESULTS}/diffim/{pair}", "--science", pair_paths(pair)["science"], "--out", out,
                "--label", f"pair_id={pair}"]
        # the science image's content and the pair's differencing (its stamp) decide the cutouts
        jobs.append(_pair_job("cutouts", pair, args, f"{code}|{pair_checksum(pair)}", [out],
                              inputs=[batch_stamp("diffim", pair)]))
    options = stage_flags("realbogus", keys=("cutout_size",))
    return _batch_plan(["cutouts", options, provenance_flags("cutouts", "realbogus.cutout_size")], jobs)


@job_function
def score_candidates_batch_plan(wildcards, input):
    code = code_version("skysift.cli.training:_score", "skysift.realbogus.task")
    jobs = []
    for pair in PAIR_BATCHES[wildcards.batch]:
        scores, catalogue = f"{RESULTS}/realbogus/candidates/{pair}.h5", f"{RESULTS}/realbogus/candidates/{pair}.ecsv"
        args = ["--product", f"{RESULTS}/cutouts/{pair}/cutouts.h5", "--out", scores, "--catalogue", catalogue,
                "--label", f"pair_id={pair}"]
        jobs.append(_pair_job("score_candidates", pair, args, code, [scores, catalogue],
                              inputs=[batch_stamp("cutouts", pair)]))
    command = ["score", f"--model {shlex.quote(str(Path(input.model).parent))}",
               provenance_flags("score_candidates", "train.realbogus")]
    return _batch_plan(command, jobs, inputs=[input.model, input.card])
