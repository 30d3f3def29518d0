# cardlab — `make demo` runs the main job, `make test` runs every test.
# Works as root on a fresh Debian machine with Python 3.11: installs the Debian
# packages it needs when they are missing, then a virtualenv in .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEBS   := pcscd vsmartcard-vpcd libpcsclite-dev swig pkg-config softhsm2 postgresql

.PHONY: demo test deps debs venv bench clean

demo: deps
	$(BIN)/cardlab demo --force

test: deps
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: deps
	$(BIN)/python benchmarks/bench_inprocess.py
	$(BIN)/python benchmarks/bench_vpcd.py
	$(BIN)/python benchmarks/bench_emv.py
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_tester.py
	$(BIN)/python benchmarks/bench_certify_reports.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_prepare_parallel.py
	$(BIN)/python benchmarks/bench_rsa.py
	$(BIN)/python benchmarks/bench_scale.py

deps: debs $(VENV)/.installed

# Debian's own python3 needs python3-venv for `-m venv`, and pyscard/python-pkcs11 build from
# source (a C compiler and Python.h); a Python that already has them (pyenv, python.org) needs none.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing build-essential"; \
	$(PYTHON) -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .hypothesis
