# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# The tests that need no Docker engine run on WORKERS processes (pytest-xdist, a test file per worker at a
# time, so a module's fixtures are made once); WORKERS=0 runs them in this process. Then the Docker tests
# run in one process: they share the engine, and their fixtures remove what appeared during the run.
WORKERS ?= 2
# pytest's exit status when a selection has no test of that kind (not a failure here)
NOT_FOUND := 5

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
	@status=0; \
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile -m "not docker" $(PYTEST_ARGS) || [ $$? -eq $(NOT_FOUND) ] || status=1; \
	$(BIN)/python -m pytest -p no:xdist -m docker $(PYTEST_ARGS) || [ $$? -eq $(NOT_FOUND) ] || status=1; \
	exit $$status

# the tests that need no server, engine or browser: a couple of minutes, for the edit-test loop
test-fast: setup
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile -m "not serve and not docker and not browser" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
