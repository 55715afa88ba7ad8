# earthcast — setup, tests, demo and benchmarks.  Every target creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORE_STAMP := $(VENV)/.earthcast-core
TEST_STAMP := $(VENV)/.earthcast-test
# The reference Earthformer (PyPI earthformer 0.2.1) lives in its own venv: it is only used to
# prove checkpoint-conversion parity and for side-by-side benchmarks.
SHARED ?= ../shared
REF_VENV ?= .ref-venv
REF_STAMP := $(REF_VENV)/.earthcast-ref-installed
REF_PY = $(if $(wildcard $(REF_STAMP)),$(abspath $(REF_VENV))/bin/python,)
PYTEST_ARGS ?=

.PHONY: test demo bench install ref lint clean

# torch first, pinned to the CPU build available on these machines (any other spec pulls CUDA)
$(CORE_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e .
	touch $(CORE_STAMP)

$(TEST_STAMP): $(CORE_STAMP) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(TEST_STAMP)

install: $(CORE_STAMP)

$(REF_STAMP):
	@if [ -f $(SHARED)/bench/setup_ref.sh ]; then \
		bash $(SHARED)/bench/setup_ref.sh $(abspath $(REF_VENV)) && touch $(REF_STAMP); \
	else echo "no $(SHARED)/bench/setup_ref.sh: reference-parity tests will be skipped"; fi

ref: $(REF_STAMP)

test: $(TEST_STAMP) ref
	EARTHCAST_REF_PYTHON=$(REF_PY) $(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

demo: $(CORE_STAMP)
	$(VENV)/bin/earthcast demo --out runs/demo

bench: $(CORE_STAMP) ref
	EARTHCAST_REF_PYTHON=$(REF_PY) $(PY) benchmarks/run_all.py --out benchmarks/results
	EARTHCAST_REF_PYTHON=$(REF_PY) $(PY) benchmarks/sample_memory.py --out benchmarks/results
	$(PY) benchmarks/attention_scaling.py --out benchmarks/results
	for p in earthformer_sevir earthformer_sevirlr earthformer_nbody; do \
		$(PY) benchmarks/head_fold.py --preset $$p --rounds 3 --out benchmarks/results || exit 1; done

clean:
	rm -rf $(VENV) $(REF_VENV) build *.egg-info
