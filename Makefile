# darkscope: the two commands are `make demo` and `make test`; each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSSTAMP := .darkscope/.sysdeps
# pip and setuptools talk a lot (setuptools explains editable installs at length): their output
# goes to this log, shown whole when the install fails.
INSTALL_LOG := .darkscope/install.log
# Debian packages: a JDK and Maven run the broker; tcpdump/tshark/kcat are used by tests and
# benchmarks; libpcap is what live capture binds to; chromium renders the report in a test.
# openssl makes the certificates of the TLS test (tests/core/test_kafka_tls.py).
DEBS := openjdk-17-jre-headless maven tcpdump tshark kcat libpcap0.8 chromium openssl

.PHONY: demo test lint typecheck unit install sysdeps broker-up broker-down clean k8s-check k8s-dryrun fuzz faults

demo: $(STAMP) $(SYSSTAMP)
	$(BIN)/darkscope demo

test: $(STAMP) $(SYSSTAMP) lint typecheck k8s-check
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	@echo "installing the pinned packages into $(VENV) (log: $(INSTALL_LOG))"
	@mkdir -p .darkscope
	@{ $(PYTHON) -m venv $(VENV) \
	  && $(BIN)/pip install --disable-pip-version-check pip==26.3 \
	  && $(BIN)/pip install --disable-pip-version-check --no-deps -r requirements.lock \
	  && $(BIN)/pip install --disable-pip-version-check --no-deps -e . ; } > $(INSTALL_LOG) 2>&1 \
	  || { cat $(INSTALL_LOG); echo "install failed (log above: $(INSTALL_LOG))"; exit 1; }
	@touch $@

# Installs the Debian packages that are missing (needs root, as on the CI and dev machines).
$(SYSSTAMP):
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	    || { echo "could not install$$missing (run as root or install them)"; exit 1; }; \
	fi
	@mkdir -p .darkscope && touch $@

# Every kustomization under infra/k8s rendered and validated (kubeconform -strict) against
# Kubernetes' and the operators' schemas; the pinned tools and schemas are fetched into
# ~/.cache/darkscope/k8s on first use (Go module proxy, PyPI, Maven Central), then offline.
k8s-check: $(STAMP) $(SYSSTAMP)
	@$(BIN)/python infra/k8s-check/check.py

# A real kube-apiserver (built from the k8s.io/kubernetes Go module, ~5 min and ~2 GB the
# first time) and etcd on 127.0.0.1, the operators' CRDs created, and
# `kubectl apply --dry-run=server -k` on every kustomization. Not part of `make test`.
k8s-dryrun: $(STAMP) $(SYSSTAMP)
	@missing=""; for p in etcd-server openssl; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	    || { echo "could not install$$missing (run as root or install them)"; exit 1; }; \
	fi
	@$(BIN)/python infra/k8s-check/dryrun.py

# Coverage-guided fuzzing (atheris, libFuzzer) of the pcap and pcapng readers, the packet
# decoder and every message decoder: FUZZ_RUNS inputs for each of the 8 targets (1M in all by
# default, 5-7 min on one core); a finding fails the run and is left in .darkscope/fuzz/TARGET/.
FUZZ_RUNS ?= 125000
fuzz: $(STAMP)
	$(BIN)/python -m fuzz.run_all --runs $(FUZZ_RUNS)

# Fault injection on real processes (python -m faults.run): its own broker on 127.0.0.1:29092
# with its data folder on a tmpfs (root mounts it; the disk-full scenario fills it), a paced
# simulated sensor, one worker, one sink into chDB; five scenarios one at a time (~6 min),
# then a table (recovered after, lost, doubled); a scenario that loses or doubles fails the run.
faults: $(STAMP) $(SYSSTAMP)
	$(BIN)/python -m faults.run

broker-up: $(STAMP) $(SYSSTAMP)
	$(BIN)/darkscope broker up

broker-down: $(STAMP)
	$(BIN)/darkscope broker down

clean:
	-$(BIN)/darkscope broker down
	rm -rf $(VENV) .darkscope .pytest_cache .mypy_cache .ruff_cache
