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

# The demo: a SynthDrive drive recorded as a rosbag2 MCAP bag (generated once, then cached in
# data/), played to stt_node over DDS with the shipped demo model; report, output bag and
# overlays land in $(DEMO_OUT).
DEMO_FRAMES ?= 90
DEMO_SEED   ?= 7
DEMO_DATA   ?= data/demo/synthdrive_seed$(DEMO_SEED)_$(DEMO_FRAMES)f
DEMO_OUT    ?= runs/demo
DEMO_RATE   ?= 1.0
# stt_node's defaults (the model YAML records the library's torch/fp32): auto runs TensorRT on an
# NVIDIA GPU, else OpenVINO on the CPU (bf16 where it has AVX512-BF16/AMX; converted once, cached
# beside the model), else torch. The reference run: make demo DEMO_BACKEND=torch DEMO_PRECISION=fp32.
# More model settings: DEMO_SET="key=value ..." (a --set in DEMO_ARGS would replace these).
DEMO_BACKEND   ?= auto
DEMO_PRECISION ?= auto
DEMO_SET       ?=

demo: setup
	@test -d $(DEMO_DATA)/bags/val || $(VENV)/bin/stt-synthdrive --out $(DEMO_DATA) --train 0 --val 1 \
		--frames $(DEMO_FRAMES) --height 128 --width 256 --seed $(DEMO_SEED)
	ROS_DOMAIN_ID=$(DEMO_DOMAIN) $(VENV)/bin/stt-bag-eval $(DEMO_DATA)/bags/val/synthdrive_000000 \
		--through-node --rate $(DEMO_RATE) --out $(DEMO_OUT) --overwrite \
		--set backend=$(DEMO_BACKEND) precision=$(DEMO_PRECISION) $(DEMO_SET) $(DEMO_ARGS)

bench: setup
	$(PY) bench/bench_stt_step.py
	$(PY) bench/bench_sparse_vs_dense.py

clean:
	rm -rf build install log build.log
