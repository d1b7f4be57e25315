# Every target installs what it needs itself: a virtual environment with the package and its
# test extras, and (as root) the Debian packages the real-NAT lab and the browser test use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
LAB_PACKAGES := nftables iptables conntrack iproute2 coturn stun-client miniupnpd-nftables
BROWSER_PACKAGES := chromium chromium-driver

.PHONY: run test bench lint lab-deps browser-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages for the namespace lab; only as root, only when something is missing.
lab-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  for c in nft iptables conntrack ip turnserver stun miniupnpd; do command -v $$c >/dev/null || missing=1; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing lab packages: $(LAB_PACKAGES)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(LAB_PACKAGES) >/dev/null; \
	  fi; \
	fi

# Headless Chromium and its driver for the status page's real-browser test (tests/web); only as
# root, only when missing (elsewhere that test skips, saying why).
browser-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	    echo "installing browser packages: $(BROWSER_PACKAGES)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	  fi; \
	fi

run: $(STAMP)
	$(VENV)/bin/macula-nat demo

test: $(STAMP) lab-deps browser-deps lint
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m tests.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check macula_nat tests examples
	$(VENV)/bin/ruff format --check macula_nat tests examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
