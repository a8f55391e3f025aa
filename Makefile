# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Tests run on WORKERS processes (pytest-xdist; tests/conftest.py keeps a module's tests together and
# everything that uses the Docker engine on one worker). WORKERS=0 runs them in this process.
WORKERS ?= 2

.PHONY: setup demo test test-fast clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all,test]"
	$(BIN)/pip install --quiet --no-deps "kserve>=0.13"  # its models only; its own pins (pandas<3) would downgrade ours
	touch $@

demo: setup
	$(BIN)/deploykit demo

test: setup
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)

# the tests that need no server, engine or browser: a couple of minutes, for the edit-test loop
test-fast: setup
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup -m "not serve and not docker and not browser" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
