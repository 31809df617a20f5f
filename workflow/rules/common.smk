# Helpers shared by all rule files (configuration validation, paths, seeds) and
# the command that calls the skysift CLI. Rules stay thin and call `skysift`.

import json
import shlex
import sys
from pathlib import Path

SRC_DIR = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC_DIR))

from skysift.config import derive_seed, load_schema, read_pairs_table, validate_config  # noqa: E402
from skysift.errors import ConfigError  # noqa: E402
from skysift.provenance import config_hash, source_digest  # noqa: E402
from skysift.releases import pair_fingerprint, read_release  # noqa: E402

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
LOGS = "logs"
CONFIG_HASH = config_hash(config)
# Rules run `python -m skysift` from this checkout's source tree, so a job uses
# the code of the checkout that scheduled it, in a venv or in a conda env alike.
SKYSIFT_CLI = f"PYTHONPATH={SRC_DIR}${{PYTHONPATH:+:$PYTHONPATH}} python -m skysift"


def code_version(*subpackages):
    """Digest of the skysift source a rule runs (core modules + its subpackages).

    Used as a rule parameter so that editing the library reruns exactly the
    rules whose code changed (Snakemake does not track imported modules).
    """
    return source_digest(SRC_DIR / "skysift", subpackages)


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
    """Turn a mapping of parameters into `--key-name value` flags (None: leave the default)."""
    return " ".join(
        f"--{key.replace('_', '-')} {str(value).lower() if isinstance(value, bool) else value}"
        for key, value in options.items()
        if value is not None
    )


def simulated_pair_ids():
    """Identifiers of the pairs the demo simulates (sim00, sim01, ...)."""
    n_pairs = config["simulate"]["pairs"]["n_pairs"]
    return [f"sim{index:02d}" for index in range(n_pairs)]


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


def pair_checksums(wildcards):
    """Checksums of a pair's inputs (a parameter: a new release reruns exactly the changed pairs)."""
    row = TABLE_PAIRS.get(wildcards.pair)
    return pair_fingerprint(row) if row is not None else "simulated"


def release_name():
    return Path(config["release"]).stem if config["release"] else ""


TABLE_PAIRS = table_pairs()


def pair_seed(pair_id):
    return derive_seed(config["seed"], "simulate_pair", pair_id)


def simulation_options(pair_id="sim00"):
    """Field parameters for `skysift simulate pair`, from config simulate.pairs.

    Real/bogus training pairs (rb*) have no transients: every candidate found on
    them before injection is an artefact, so the bogus class is clean.
    """
    options = dict(config["simulate"]["pairs"])
    options.pop("n_pairs")
    if pair_id.startswith("rb"):
        options["n_transients"] = 0
    return options


def pair_ids():
    """Every pair that is differenced: simulated ones, then those of the pairs table."""
    return simulated_pair_ids() + list(TABLE_PAIRS)


def pair_inputs(wildcards):
    """Science, reference and optional masks of one pair (simulated or from the table)."""
    if wildcards.pair in TABLE_PAIRS:
        row = TABLE_PAIRS[wildcards.pair]
        inputs = {"science": str(row["science"]), "reference": str(row["reference"])}
        for mask in ("science_mask", "reference_mask"):
            if row[mask] is not None:
                inputs[mask] = str(row[mask])
        return inputs
    return {
        "science": f"{RESULTS}/simulate/{wildcards.pair}/science.fits",
        "reference": f"{RESULTS}/simulate/{wildcards.pair}/reference.fits",
    }


def mask_flags(wildcards, input):
    flags = []
    if "science_mask" in input.keys():
        flags.append(f"--science-mask {input.science_mask}")
    if "reference_mask" in input.keys():
        flags.append(f"--reference-mask {input.reference_mask}")
    return " ".join(flags)


def diffim_products():
    return expand(
        f"{RESULTS}/diffim/{{pair}}/{{product}}",
        pair=pair_ids(),
        product=[
            "difference.fits", "scorr.fits", "fpsf.fits", "fpsf_err.fits", "aligned_reference.fits", "candidates.ecsv"
        ],
    )


def realbogus_products():
    if not config["realbogus"]["enabled"]:
        return []
    products = expand(f"{RESULTS}/cutouts/{{pair}}/cutouts.h5", pair=pair_ids())
    products += expand(f"{RESULTS}/realbogus/candidates/{{pair}}.h5", pair=pair_ids())
    products += expand(f"{RESULTS}/realbogus/candidates/{{pair}}.ecsv", pair=pair_ids())
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


TRAINER_KEYS = (
    "epochs", "batch_size", "learning_rate", "weight_decay", "patience", "val_fraction",
    "test_fraction", "num_workers", "threads", "device",
)


def enabled_tasks():
    """Model tasks switched on in the configuration."""
    return [task for task in ("realbogus", "transit", "lens", "gw") if config[task]["enabled"]]


def train_settings(task):
    return config["train"][task]


def train_flags(task):
    """`skysift train` options for a task (model keyword arguments as JSON)."""
    settings = train_settings(task)
    flags = cli_flags({key: settings[key] for key in TRAINER_KEYS})
    flags += f" --seed {derive_seed(config['seed'], 'train', task)}"
    if settings["model"]:
        flags += f" --model-json {shlex.quote(json.dumps(settings['model'], sort_keys=True))}"
    return flags


def train_launcher(wildcards):
    """Several GPUs: DDP through `skysift launch` (srun under SLURM, torchrun elsewhere)."""
    gpus = train_settings(wildcards.task)["gpus"]
    return f"launch --nproc {gpus} -- train" if gpus > 1 else "train"


def dask_flags():
    flags = f"--cluster {config['dask']['cluster']}"
    if config["dask"]["workers"]:
        flags += f" --workers {config['dask']['workers']}"
    return flags


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


def all_products():
    """Every data product of the run, for the provenance summary."""
    return simulated_products() + diffim_products() + realbogus_products() + model_products()


def all_targets():
    targets = expand(f"{RESULTS}/simulate/{{pair}}/preview.png", pair=simulated_pair_ids())
    targets += expand(f"{RESULTS}/simulate/{{pair}}/preview.png", pair=realbogus_training_pair_ids())
    targets += expand(f"{RESULTS}/diffim/{{pair}}/preview.png", pair=pair_ids())
    targets += realbogus_products()
    for task in enabled_tasks():
        targets += [
            f"{RESULTS}/models/{task}/training_curve.png",
            f"{RESULTS}/{task}/evaluation/roc.png",
            f"{RESULTS}/{task}/evaluation/gallery.png",
        ]
    if enabled_tasks():
        targets.append(f"{RESULTS}/evaluation/metrics.html")
    if config["gw"]["enabled"]:
        targets += [f"{RESULTS}/gw/sensitivity.png", f"{RESULTS}/gw/sensitivity.json"]
    targets += [f"{RESULTS}/provenance/summary.json", f"{RESULTS}/provenance/summary.html"]
    targets += [f"{RESULTS}/provenance/prov.json", f"{RESULTS}/provenance/ivoa_provenance.json"]
    return targets
