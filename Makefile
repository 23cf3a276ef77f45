# The two commands of the README. Each does the one-time set-up first (scripts/setup.sh).
# test-fast is the inner loop: every test not marked slow. `make test` (all of them) is what CI runs.
.PHONY: demo test test-fast setup

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/clbench suite scenarios/quick.toml

test: setup
	.venv/bin/python -m pytest -q

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"
