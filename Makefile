# Two commands on a fresh machine (nothing needed but Python 3.11):
#   make demo   create .venv, install, run the whole workflow on the embedded demo, write the report
#   make test   install if needed, run the test suite
#
# Torch: the default install is CPU-only. TORCH_SPEC is installed first so that the package's
# own `torch>=...` requirement is already met; GPU users set TORCH_SPEC/TORCH_INDEX_URL to
# their CUDA build (see README, "GPU installs").

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
CORES ?= 2
PYTEST_ARGS ?=
STAMP := $(VENV)/.skysift-installed

export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: all install demo report archive test lint dryrun clean distclean

all: test

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is required, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores $(CORES) --report results/report.html
	@echo "demo finished: products in results/, report in results/report.html"

report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

archive: $(STAMP)
	test -s results/report.html || $(BIN)/snakemake --cores $(CORES) --report results/report.html
	$(BIN)/skysift archive create --results results --bundle archive/$$($(BIN)/python -c 'import yaml; print(yaml.safe_load(open("config/config.yaml"))["run_name"])') --overwrite
	$(BIN)/skysift archive verify archive/$$($(BIN)/python -c 'import yaml; print(yaml.safe_load(open("config/config.yaml"))["run_name"])')

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint

dryrun: $(STAMP)
	$(BIN)/snakemake -n

clean:
	rm -rf results results-slurm logs archive .snakemake .pytest_cache

distclean: clean
	rm -rf $(VENV) src/*.egg-info
