# SAGAN from scratch -- every task of the project, each one line for a reader to copy.
# The README's two commands:  `make book` (the main job)  and  `make test` (every test).
# Both create/reuse the virtual environment .venv and install what they need from PyPI.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXECUTED := _build/executed
STAGE := _build/stage
# 3, not 2: TensorFlow logs some ERROR-level lines that are not errors ("remapper failed", "oneDNN supports DT_HALF
# only on ..."), at different times in different runs; in a cell nbval compares, such a line fails the comparison.
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONWARNINGS ?= ignore::DeprecationWarning
# TensorFlow's BFC allocator on the CPU: 7-11% faster training here (book/performance.md). `import sagan_tut` sets
# it too, but the chapters import TensorFlow first.
export TF_CPU_ALLOCATOR_USE_BFC ?= true
# Test processes at a time (pytest-xdist, one test file or notebook per worker). Run one after another, the tests kept
# only ~1.1 of 2 cores busy on average (compiles, kernel start-ups, subprocesses, small ops are single-threaded), so
# two workers cut `make test`'s wall time (benchmarks/results/make_test.md). JOBS=1 runs them one at a time.
JOBS ?= 2
XDIST = -n $(JOBS) --dist loadfile

.PHONY: reference peer-venv install book book-from-nbval test unit nbval browser chromium notebooks train-quick bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else "need Python 3.10-3.12, found %d.%d: set PYTHON=python3.11" % v)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[book,dev]"
	@touch $@

install: $(STAMP)

# The main job: build the book, executing every chapter in the quick profile.
book: $(STAMP)
	SAGAN_TUT_PROFILE=quick $(BIN)/jupyter-book build . -W -n --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

# Every test: unit tests, the notebooks against their committed outputs, the strict book build, a real browser.
# Each notebook is executed once: nbval runs it and compares the marked cells, tests/nbval_save.py keeps every
# cell's outputs from that run, and book-from-nbval builds the book (just as strictly) from those executed copies
# instead of executing every chapter a second time. That plugin was chosen over jupyter-book's
# `execute_notebooks: cache`, which would execute once too, but nbval can't read jupyter-cache's results, so the
# comparison with the committed outputs would need a re-implementation of nbval. A notebook whose run failed has no
# executed copy, and one edited since nbval ran is refused, so stale outputs can't be built.
test: $(STAMP) chromium
	$(BIN)/pytest tests -m "not browser" $(XDIST)
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory book-from-nbval
	SAGAN_TUT_REQUIRE_BOOK=1 $(BIN)/pytest tests -m browser

unit: $(STAMP)
	$(BIN)/pytest tests -m "not browser" $(XDIST)

# Also saves each chapter it executed, outputs included, to $(EXECUTED) (only chapters whose cells all passed).
# Under xdist --dist loadfile each notebook's cells all run in order in one worker's kernel.
nbval: $(STAMP)
	SAGAN_TUT_PROFILE=quick $(BIN)/python -m pytest -p tests.nbval_save --nbval-save=$(EXECUTED) \
	  --nbval-lax -p no:randomly $(XDIST) notebooks/ --ignore-glob='notebooks/_*'

# The book, strict as `make book`, from the chapters `make nbval` just executed: a copy of the sources in
# $(STAGE) with those notebooks and execution off, built into _build/html (--all: every page read afresh).
book-from-nbval: $(STAMP)
	$(BIN)/python -m tests.nbval_save stage --executed $(EXECUTED) --out $(STAGE)
	$(BIN)/jupyter-book build $(STAGE) --path-output . --all -W -n --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

browser: $(STAMP) chromium
	SAGAN_TUT_REQUIRE_BOOK=1 $(BIN)/pytest tests -m browser

chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "chromium missing: run 'sudo apt-get install chromium'"; exit 1; }

# Re-execute every chapter in the quick profile and store its outputs (nbval's reference).
notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
	  SAGAN_TUT_PROFILE=quick $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=900 "$$nb" || exit 1; done

train-quick: $(STAMP)
	$(BIN)/sagan-tut train --preset quick --out runs/quick

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The reference runs the book shows (sagan_tut/reference.py): trained to convergence on the procedural faces, about
# 20 + 90 minutes on 2 CPU cores; an interrupted run resumes when this is run again. Artefacts: book/reference/.
reference: $(STAMP)
	$(BIN)/python -m sagan_tut.reference

# The PyTorch peer of benchmarks/bench_peer.py in a venv of its own: torch 2.13's CPU wheel and torch-mimicry's
# model code. --no-deps: mimicry's declared dependencies (torchvision, TensorFlow, scikit-learn...) are for its
# training and metrics, which the benchmark does not import, and would pull a CUDA build of torch.
peer-venv:
	@test -x .venv-peer/bin/python || $(PYTHON) -m venv .venv-peer
	.venv-peer/bin/python -m pip install -q torch==2.13.0 numpy
	.venv-peer/bin/python -m pip install -q --no-deps torch-mimicry==0.1.16

clean:
	rm -rf _build runs
