# ryu_nat: `make demo`, `make lab` and `make test` work from a fresh clone on Debian 12 as root.
# All install what is missing (Debian packages, the .venv) and are safe to run again.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CI builds every environment first (the bench smoke test in each unit suite starts the os-ken one),
# then runs the unit suite on each of these (pyenv's interpreters; a missing one fails), the end-to-end suite
# in .venv, and the unit suite plus an end-to-end subset on os-ken with OSKEN_PYTHON.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
UNIT_PYTHONS := 3.10 3.11 3.12 3.13
OSKEN_PYTHON := 3.12
OSKEN_VENV := .venv-osken
OSKEN_E2E := tests/e2e/test_e2e_translation.py tests/e2e/test_e2e_icmp.py \
	tests/e2e/test_e2e_lifetimes.py::test_new_connections_work_after_the_controller_restarts
# The newest pyenv interpreter of a minor version, e.g. $(call pyenv_python,3.12); empty if there is none.
pyenv_python = $(shell ls -d $(PYENV_ROOT)/versions/$(1).*/bin/python 2>/dev/null | sort -V | tail -n 1)
APT_PACKAGES := openvswitch-switch mininet iproute2 iputils-ping ethtool iperf3 \
	tcpdump netcat-openbsd traceroute curl procps psmisc chromium tmux
PYTEST_ARGS ?=

.PHONY: all venv venvs system-deps test unit unit-all e2e osken demo lab bench bench-smoke clean \
	$(UNIT_PYTHONS:%=unit-%)

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

# A virtual environment with Ryu 4.34: $(call ryu_venv,DIR,INTERPRETER).
# Ryu's setup needs easy_install.get_script_args, gone in setuptools 68, and Python 3.12 needs
# setuptools 66.1 or later: Ryu, and then this project, are installed without build isolation on that range.
# The .pth file lets the plain ryu-manager start (see ryu_nat/compat.py).
define ryu_venv
	@test -n "$(2)" || { echo "no Python interpreter for $(1): install it (pyenv install)"; exit 1; }
	test -x $(1)/bin/python || $(2) -m venv $(1)
	$(1)/bin/python -m pip install -q "setuptools>=66.1,<68" wheel pbr
	$(1)/bin/python -m pip install -q --no-build-isolation -e '.[ryu,test]'
	$(1)/bin/python -c 'import sysconfig; open(sysconfig.get_paths()["purelib"] + "/ryu_nat-compat.pth", "w").write("import ryu_nat.compat; ryu_nat.compat.install()\n")'
	touch $(1)/.installed
endef

$(STAMP): setup.cfg pyproject.toml
	$(call ryu_venv,$(VENV),$(PYTHON))

.venv-%/.installed: setup.cfg pyproject.toml
	$(call ryu_venv,.venv-$*,$(call pyenv_python,$*))

# os-ken builds like any package: no pins on setuptools, no shim.
$(OSKEN_VENV)/.installed: setup.cfg pyproject.toml
	@test -n "$(call pyenv_python,$(OSKEN_PYTHON))" || { echo "Python $(OSKEN_PYTHON) is missing (pyenv install)"; exit 1; }
	test -x $(OSKEN_VENV)/bin/python || $(call pyenv_python,$(OSKEN_PYTHON)) -m venv $(OSKEN_VENV)
	$(OSKEN_VENV)/bin/python -m pip install -q -e '.[osken,test]'
	touch $@

venv: $(STAMP)

venvs: $(STAMP) $(UNIT_PYTHONS:%=.venv-%/.installed) $(OSKEN_VENV)/.installed

unit: $(STAMP)
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)

$(UNIT_PYTHONS:%=unit-%): unit-%: .venv-%/.installed
	.venv-$*/bin/python -m pytest tests/unit $(PYTEST_ARGS)

unit-all: $(UNIT_PYTHONS:%=unit-%)

e2e: system-deps $(STAMP)
	$(VPY) -m pytest tests/e2e $(PYTEST_ARGS)

osken: system-deps $(OSKEN_VENV)/.installed
	$(OSKEN_VENV)/bin/python -m pytest tests/unit $(OSKEN_E2E) $(PYTEST_ARGS)

test: system-deps venvs unit-all e2e osken

demo: system-deps $(STAMP)
	$(VPY) mininet/demo.py

# The lab's two terminals (mininet/LAB.md) in one tmux window: the controller above, Mininet below.
lab: system-deps $(STAMP)
	mininet/lab.sh

# The Linux NAT baseline needs nftables; the rest of what the benchmarks use is in APT_PACKAGES.
# Ryu and os-ken side by side: ryu_nat's set-ups/s on each, in one run.
bench: system-deps $(STAMP) $(OSKEN_VENV)/.installed
	@dpkg-query -W -f='$${Status}' nftables 2>/dev/null | grep -q "ok installed" || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables
	$(VPY) bench/run.py

bench-smoke: $(STAMP)
	$(VPY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .venv-* *.egg-info .pytest_cache .hypothesis
