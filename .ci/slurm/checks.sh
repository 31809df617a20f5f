#!/usr/bin/env bash
# SLURM checks for CI, on a one-node cluster started here and stopped on exit:
#   (a) the demo DAG through the SLURM executor plugin (profiles/slurm) into results-slurm/;
#   (b) a 2-process DDP training step in SLURM allocations (salloc), started by srun
#       (2 tasks) and by torchrun (1 task with 2 CPUs), through `skysift launch`;
#   (c) tests/slurm (a batch job and a Dask SLURMCluster map through skysift.parallel).
# Run as root, after `make test`/`make demo` have created .venv (.ci/run does both).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

checks_started=$(date +%s)
timings=()
step_started=0
step() { step_started=$(date +%s); echo; echo "=== slurm: $*"; }
step_done() {
    local seconds=$(( $(date +%s) - step_started ))
    timings+=("$(printf '%-38s %4d s' "$1" "$seconds")")
    echo "--- $1: ${seconds} s"
}

scratch=$(mktemp -d /tmp/skysift-slurm.XXXXXX)
cleanup() {
    local status=$?
    "$REPO/.ci/slurm/down.sh" || true
    rm -rf "$scratch"
    exit "$status"
}
trap cleanup EXIT

test -x .venv/bin/python || { echo "error: .venv missing; run make install (or make test) first" >&2; exit 1; }

step "bring up the one-node cluster"
.ci/slurm/up.sh
step_done "cluster up (up.sh)"

step "SLURM venv (.venv-slurm)"
.ci/slurm/venv.sh 2>&1 | grep -v "^WARNING: Location 'file:" || true
test -x .venv-slurm/bin/snakemake
step_done "venv (venv.sh)"

# (a) -----------------------------------------------------------------------------
step "demo DAG via --executor slurm (profiles/slurm) into results-slurm/"
rm -rf results-slurm
# The whole demo DAG, made smaller where its cost lies (transit training set, epochs):
# this checks scheduling through SLURM, not the science, and 2 cores are shared.
cat > "$scratch/slurm-ci.yaml" <<'YAML'
results_dir: results-slurm
transit:
  n_samples: 400
lens:
  n_samples: 256
gw:
  n_samples: 128
  test_duration: 60
realbogus:
  n_training_pairs: 1
  n_injections_per_image: 20
  n_repeats: 1
train:
  transit:
    epochs: 1
  lens:
    epochs: 1
  gw:
    epochs: 1
  realbogus:
    epochs: 1
YAML
# The profile leaves partition and account to the site; this cluster's site settings
# are given on the command line. Without slurmdbd, job status comes from squeue.
# .venv-slurm first on PATH: sbatch exports it to the jobs, whose rules call `python`.
# --cores 2: a batch of per-pair jobs (the profile's groups) asks for at most 2 CPUs, what a
# CI node is sure to have; the two demo pairs' jobs then run one after another in one SLURM job.
PATH="$REPO/.venv-slurm/bin:$PATH" snakemake --workflow-profile profiles/slurm \
    --configfile "$scratch/slurm-ci.yaml" --cores 2 \
    --default-resources slurm_partition=debug mem_mb=1000 runtime=10 cpus_per_task=1 \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
    --jobs 4 --quiet rules > "$scratch/snakemake-slurm.log" 2>&1 \
    || { tail -60 "$scratch/snakemake-slurm.log" >&2; exit 1; }
grep -E "steps \(100%\) done|jobid [0-9]+ \(log:" "$scratch/snakemake-slurm.log" | tail -3 || true
test -s results-slurm/provenance/summary.json
step_done "demo DAG via slurm"

# (b) -----------------------------------------------------------------------------
step "DDP training step, 2 processes, inside SLURM jobs"
.venv/bin/python -c "import sys; sys.path.insert(0, 'tests/train'); from pathlib import Path; \
import blob_task; blob_task.make_blob_product(Path('$scratch/blobs.h5'))"
train_args=(train --plugin blob_task --task blob --product "$scratch/blobs.h5" --epochs 1
            --batch-size 32 --device cpu --threads 1)
export PYTHONPATH="$REPO/tests/train${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1

run_ddp() {  # run_ddp NAME SALLOC_OPTIONS... -- [srun]: train on 2 processes, check world_size
    local name=$1; shift
    local salloc_options=() prefix=()
    while [[ $1 != -- ]]; do salloc_options+=("$1"); shift; done
    shift; prefix=("$@")
    local outdir="$scratch/ddp-$name"
    # salloc rather than `sbatch --wait`, whose polling adds up to ~30 s to a 10 s job.
    if ! salloc --quiet --job-name="skysift-ddp-$name" --time=10 --mem-per-cpu=2000 "${salloc_options[@]}" \
            "${prefix[@]}" "$REPO/.venv/bin/python" -m skysift launch --nproc 2 -- \
            "${train_args[@]}" --outdir "$outdir" > "$scratch/ddp-$name.out" 2>&1; then
        echo "error: DDP job ($name) failed; its output:" >&2
        tail -40 "$scratch/ddp-$name.out" >&2
        exit 1
    fi
    grep -m1 "launching:" "$scratch/ddp-$name.out" | sed 's/^.*launching:/    launched:/' || true
    "$REPO/.venv/bin/python" - "$outdir/model_card.json" "$name" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))
assert card["world_size"] == 2, f"{sys.argv[2]}: world_size {card['world_size']}, expected 2"
print(f"    {sys.argv[2]}: model card world_size {card['world_size']}")
PY
}
ddp_started=$(date +%s)
# 2 tasks: launch (on the submitting host) sees SLURM_NTASKS=2 and starts the ranks with srun.
run_ddp srun --ntasks=2 --cpus-per-task=1 --
echo "    srun path: $(( $(date +%s) - ddp_started )) s"
torchrun_started=$(date +%s)
# 1 task with 2 CPUs: launch runs in that task, sees SLURM_NTASKS=1 and starts torchrun.
run_ddp torchrun --ntasks=1 --cpus-per-task=2 -- srun --ntasks=1
echo "    torchrun path: $(( $(date +%s) - torchrun_started )) s"
step_done "DDP step (srun + torchrun)"

# (c) -----------------------------------------------------------------------------
step "tests/slurm: batch job and Dask SLURMCluster (skysift.parallel)"
.venv-slurm/bin/python -m pytest tests/slurm -m slurm -q -rs -p no:cacheprovider 2>&1 | tee "$scratch/pytest-slurm.log"
if grep -qi "skipped\|no tests ran" "$scratch/pytest-slurm.log"; then
    echo "error: SLURM tests were skipped although the cluster is up" >&2
    exit 1
fi
step_done "Dask SLURMCluster + batch job tests"

echo
echo "=== slurm checks passed in $(( $(date +%s) - checks_started )) s"
printf '    %s\n' "${timings[@]}"
