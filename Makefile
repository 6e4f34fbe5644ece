# ryu_nat: `make demo`, `make lab` and `make test` work from a fresh clone on Debian 12 as root.
# All install what is missing (Debian packages, the .venv) and are safe to run again.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := openvswitch-switch mininet iproute2 iputils-ping ethtool iperf3 \
	tcpdump netcat-openbsd traceroute curl procps psmisc chromium tmux
PYTEST_ARGS ?=

.PHONY: all venv system-deps test unit e2e demo lab bench bench-smoke clean

all: test

# Install only the Debian packages that are missing, so reruns do no apt work.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Ryu 4.34 does not build under pip's build isolation on current setuptools:
# install it, and then this project, without isolation on setuptools<58.
$(STAMP): setup.cfg pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q "setuptools<58" wheel pbr
	$(VPY) -m pip install -q --no-build-isolation -e '.[test]'
	$(VPY) -c 'import sysconfig; open(sysconfig.get_paths()["purelib"] + "/ryu_nat-compat.pth", "w").write("import ryu_nat.compat\n")'
	touch $(STAMP)

venv: $(STAMP)

unit: $(STAMP)
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)

e2e: system-deps $(STAMP)
	$(VPY) -m pytest tests/e2e $(PYTEST_ARGS)

test: system-deps $(STAMP)
	$(VPY) -m pytest tests $(PYTEST_ARGS)

demo: system-deps $(STAMP)
	$(VPY) mininet/demo.py

# The lab's two terminals (mininet/LAB.md) in one tmux window: the controller above, Mininet below.
lab: system-deps $(STAMP)
	mininet/lab.sh

# The Linux NAT baseline needs nftables; the rest of what the benchmarks use is in APT_PACKAGES.
bench: system-deps $(STAMP)
	@dpkg-query -W -f='$${Status}' nftables 2>/dev/null | grep -q "ok installed" || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables
	$(VPY) bench/run.py

bench-smoke: $(STAMP)
	$(VPY) bench/run.py --smoke

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
