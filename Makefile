# The two set-up commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test soak bench bench-quick bench-swarm bench-scale fuzz install install-test install-bench system-deps clean

# Debian packages the tests need, installed when missing (CI is root on a fresh Debian machine;
# apt-get update only then): the namespace lab (ip, tc, nft, ethtool; its delay line's
# NFQUEUE rule is iptables', its binding builds against libnetfilter-queue-dev with gcc; ping
# measures it), mktorrent (folder
# torrents made by another tool), aria2 (a standard client for the HTTP tracker), and the web
# view's browser tests (chromium, chromium-driver).
DEBIAN_PACKAGES := iproute2 nftables ethtool iptables gcc libnetfilter-queue-dev iputils-ping mktorrent aria2 transmission-daemon transmission-cli chromium chromium-driver

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

install-test: $(BIN)/python system-deps
	$(BIN)/pip install --quiet -e '.[test]'

install-bench: $(BIN)/python system-deps
	$(BIN)/pip install --quiet -e '.[test,bench]'

demo: install
	$(BIN)/python -m ctl.demo

# 4 workers on 2 cores: most tests wait on real processes and sockets more than they compute.
# Tests marked xdist_group("NAME") share one worker and run in turn (the namespace lab, the soaks).
PYTEST_WORKERS ?= 4

test: install-test
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# A 5-minute soak: 10 peers, a random node SIGKILLed every 20 s (the full one: --peers 20 --minutes 30)
soak: install
	$(BIN)/python main.py soak --peers 10 --files 6 --minutes 5 --kill-every 20

# zorrent against libtorrent (PyPI wheel) in one run, then the tracker's announce rate
bench: install-bench
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/tracker_rate.py --mongo

bench-quick: install-bench
	$(BIN)/python bench/bench.py --quick
	$(BIN)/python bench/tracker_rate.py --announces 20000

# zorrent and libtorrent on the same namespace topology with capped links, as ratios to T_min (root)
bench-swarm: install-bench
	$(BIN)/python bench/swarm.py

# idle CPU and RSS of 10, 100 and 300 peers under supervisord (tracker and web view too), CLI start-up,
# and a data-port ping's latency while the peer hashes a large upload
bench-scale: install-bench
	$(BIN)/python bench/scale.py

# 100,000 hypothesis-generated frames to the decoder, the tracker and both peer sockets
fuzz: install-bench
	$(BIN)/python bench/fuzz.py --frames 100000

clean:
	rm -rf output .pytest_cache
