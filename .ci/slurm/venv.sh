#!/usr/bin/env bash
# Create .venv-slurm: skysift + Snakemake + the SLURM executor plugin + dask-jobqueue.
#
# The plugin stays out of the main .venv on purpose: installed where no SLURM
# controller answers, it adds seconds to every `snakemake` start. Torch is the
# local CPU wheel (torch==2.13.0, installed first, like the Makefile does); any
# other torch spec would download the multi-GB CUDA build.
#
# Safe to run repeatedly: does nothing when the venv is newer than pyproject.toml
# and this script.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV_SLURM:-.venv-slurm}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP=$VENV/.skysift-slurm-installed
SNAKEMAKE_SPEC="snakemake==9.27.1"
PLUGIN_SPEC="snakemake-executor-plugin-slurm==2.8.0"
JOBQUEUE_SPEC="dask-jobqueue==0.9.0"

if [[ -f $STAMP && $STAMP -nt pyproject.toml && $STAMP -nt $0 ]]; then
    echo "$VENV is up to date"
    exit 0
fi
started=$(date +%s)
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[workflow,test,gw]" \
    "$SNAKEMAKE_SPEC" "$PLUGIN_SPEC" "$JOBQUEUE_SPEC"
touch "$STAMP"
echo "$VENV ready in $(( $(date +%s) - started )) s:" \
    "$("$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
        | awk '$1 ~ /^(snakemake|snakemake-executor-plugin-slurm|dask-jobqueue|torch)$/ {printf "%s %s; ", $1, $2}')"
