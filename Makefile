# The README's commands. Each target installs what it needs first (scripts/setup.sh is idempotent).
PY := .venv/bin/python

.PHONY: setup quickstart quickstart-quick test test-all test-optimum bench clean

setup:
	bash scripts/setup.sh

quickstart: setup
	$(PY) -m edgedistill.cli run examples/quickstart.yaml

quickstart-quick: setup
	$(PY) -m edgedistill.cli run examples/quickstart.yaml --quick

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

# the optional optimum exporter, in its own transformers-4 environment (scripts/optimum_env.sh)
test-optimum:
	bash scripts/optimum_env.sh
	.venv-optimum/bin/python -m pytest -q -m optimum

clean:
	rm -rf runs quickstart-out .pytest_cache
