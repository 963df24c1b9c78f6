# Two commands do all the set-up on a fresh machine (Python >= 3.11 with venv):
#   make train   runs train.py on the default synthetic config (workdir: runs/default)
#   make test    runs the test suite
# Both create .venv on first use with the training app's extras (`.[train,plots]`);
# `make test` adds the test extra (torch==2.13.0 CPU, pytest). The installs are editable:
# the CPU kernel compiles on first use (a wheel carries it prebuilt; .ci/wheel_check.sh).
# `make docs` builds the documentation site (mkdocs.yml, docs/) into site/, adding the docs
# extra to .venv (or creating it with the docs extra alone).

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/default

.PHONY: train test test-fast test-oldest lint bench docs clean

$(BIN)/.installed: pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train,plots]'
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

train: $(BIN)/.installed
	$(BIN)/python train.py --config configs/default.py --workdir $(WORKDIR)

test: $(BIN)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

# Everything but the tests marked slow or subprocess (tests/conftest.py): a quick check.
test-fast: $(BIN)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q -m 'not slow and not subprocess' $(PYTEST_ARGS)

# The dependency floors: the fast tier of the tests that drive the dependencies' APIs (the
# layer and its kernel, heads, training and checkpoints, readers, interop, the README's
# examples) against the oldest releases pyproject.toml accepts, in its own venv. The rest
# (fused-layer gradients, cuDNN packing, tasks, ensembles, bad input, fuzzing, properties)
# goes through the same APIs; `make test` runs everything on the current releases.
OLDEST_TESTS := tests/nn/test_lstm.py tests/nn/test_norm.py tests/nn/test_native.py \
	tests/heads tests/training tests/interop tests/test_readme.py tests/data \
	--ignore=tests/data/test_fuzz.py
test-oldest:
	PIP_CONSTRAINT=$(CURDIR)/.ci/oldest.txt $(MAKE) test-fast VENV=.venv-oldest \
		PYTEST_ARGS='$(OLDEST_TESTS)'

# The documentation site (mkdocs.yml, docs/) as HTML in site/. --strict turns every warning
# into a failure: a broken link or anchor, an unresolved reference, a docstring griffe
# cannot parse. The docs extra alone (a fresh venv gets the core dependencies with it).
$(BIN)/.installed-docs: pyproject.toml setup.py
	test -x $(BIN)/pip || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

# NO_MKDOCS_2_WARNING: Material's end-of-life banner (docs/index.md, "About these docs").
docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(BIN)/.installed-test
	$(BIN)/python benchmarks/bench_bilstm.py

clean:
	rm -rf $(VENV) .venv-oldest runs site
