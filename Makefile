# earthcast — setup, tests, demo and benchmarks.  Every target creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.earthcast-installed
# The reference Earthformer (PyPI earthformer 0.2.1) lives in its own venv: it is only used to
# prove checkpoint-conversion parity and for side-by-side benchmarks.
SHARED ?= ../shared
REF_VENV ?= .ref-venv
REF_STAMP := $(REF_VENV)/.earthcast-ref-installed
PYTEST_ARGS ?=

.PHONY: test demo bench install ref lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

$(REF_STAMP):
	@if [ -f $(SHARED)/bench/setup_ref.sh ]; then \
		bash $(SHARED)/bench/setup_ref.sh $(abspath $(REF_VENV)) && touch $(REF_STAMP); \
	else echo "no $(SHARED)/bench/setup_ref.sh: reference-parity tests will be skipped"; fi

ref: $(REF_STAMP)

test: $(STAMP) ref
	EARTHCAST_REF_PYTHON=$(if $(wildcard $(REF_STAMP)),$(abspath $(REF_VENV))/bin/python,) \
		$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

demo: $(STAMP)
	$(VENV)/bin/earthcast demo --out runs/demo

bench: $(STAMP) ref
	EARTHCAST_REF_PYTHON=$(if $(wildcard $(REF_STAMP)),$(abspath $(REF_VENV))/bin/python,) \
		$(PY) benchmarks/run_all.py --out benchmarks/results

clean:
	rm -rf $(VENV) $(REF_VENV) build *.egg-info
