# stt_ros — the two commands a new user needs: `make demo` and `make test`.
# Both set up .venv first if needed (scripts/setup_env.sh; idempotent, cached by input hashes).

VENV    := .venv
PY      := $(VENV)/bin/python
# DDS stays on loopback, on a domain of its own, for everything started from here.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
DEMO_DOMAIN ?= 42

.PHONY: setup test lint demo bench clean

setup:
	@bash scripts/setup_env.sh

lint: setup
	$(VENV)/bin/ruff check .

test: setup
	$(VENV)/bin/ruff check .
	STT_REQUIRE_ROS=1 $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

demo: setup
	ROS_DOMAIN_ID=$(DEMO_DOMAIN) $(PY) -m stt_ros.ros.demo

bench: setup
	$(PY) bench/bench_stt_step.py
	$(PY) bench/bench_sparse_vs_dense.py

clean:
	rm -rf build install log build.log
