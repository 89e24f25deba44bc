# memagent — two commands: `make chat` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: chat test test-fast bench install clean

chat: $(STAMP)
	$(BIN)/memagent chat

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
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
	rm -rf $(VENV) .pytest_cache build *.egg-info
