# All set-up lives here so that the README's two commands work on a fresh machine:
#   make run    — create .venv, install flowdisco, run the main job on its embedded default
#   make test   — create .venv, install flowdisco with its dev extras (and Debian's chromium for the
#                 report browser test, where it can), run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Torch threads: the machines have 2 cores; one job uses both.
export OMP_NUM_THREADS ?= 2

.PHONY: run test lint install bench-sampler clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: the local CPU wheel; anything unpinned would pull CUDA builds.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,chem,bio]"
	# molsets declares a pomegranate pin that has no wheel: its data and filters need no dependencies.
	$(BIN)/pip install -q --no-deps molsets==0.3.1
	# riot-na ships antibody V-gene protein sequences (the proteins domain reads only that data file).
	$(BIN)/pip install -q --no-deps riot-na==5.2.0
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/flowdisco expand qm9

# pytest exits 5 when it collected no tests: treat that as a failure, never a pass.
test: $(STAMP)
	bash tools/install_chromium.sh
	$(BIN)/python -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# flow_matching (CC BY-NC) is a benchmark-time comparator only, never a dependency of flowdisco.
bench-sampler: $(STAMP)
	$(BIN)/pip install -q --no-deps flow_matching==1.0.10 torchdiffeq==0.2.5
	$(BIN)/python benchmarks/sampler.py

clean:
	rm -rf $(VENV) runs
