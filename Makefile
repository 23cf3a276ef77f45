# The two commands of the README. Each does the one-time set-up first (scripts/setup.sh).
.PHONY: demo test setup

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/clbench suite scenarios/quick.toml

test: setup
	.venv/bin/python -m pytest -q
