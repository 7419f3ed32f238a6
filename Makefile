# parley: the two commands a new machine needs are `make run` and `make test`.
# Everything else (venv, pinned packages, certificates, the virtual display for
# GUI tests) is set up by these targets themselves.
#
# .venv is an editable install of the parley-chat package (pyproject.toml) with
# the pinned runtime set (requirements.txt); `make test` adds the development
# tools (requirements-dev.txt). The commands (parley-server, parley, parley-cli,
# parley-certs, parley-admin, parley-logs) land in .venv/bin.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
CERTS  := certs
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test fuzz-deep certs client dist onefile lint format screenshots bench fuzz sysdeps sslyze clean bench-load bench-peer bench-nodes

# Runtime only: what `make run` and `make client` need, nothing for tests or lint.
$(RUNTIME_STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -e '.[all]'
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(DEV_STAMP)

# Certificates are generated only when missing; `make certs` forces nothing either
# (use `.venv/bin/parley-certs --out certs --force` or `--renew` by hand).
$(CERTS)/server.pem: | $(RUNTIME_STAMP)
	$(BIN)/parley-certs --out $(CERTS)

certs: $(RUNTIME_STAMP)
	$(BIN)/parley-certs --out $(CERTS)

# sslyze, for the TLS profile gate (tests/server/test_tls_profile.py), lives in
# its own venv: it pins cryptography<47 and brings nassl (its own OpenSSL) and
# pydantic, none of which the project's venv should inherit. The stamp names the
# pin, so changing SSLYZE_VERSION reinstalls.
SSLYZE_VENV    := .venv-sslyze
SSLYZE_VERSION := 6.3.1
SSLYZE_STAMP   := $(SSLYZE_VENV)/.installed-$(SSLYZE_VERSION)

$(SSLYZE_STAMP):
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install -q sslyze==$(SSLYZE_VERSION)
	touch $(SSLYZE_STAMP)

sslyze: $(SSLYZE_STAMP)

# Start the server on its defaults: 127.0.0.1:5555, history in parley.db.
# Serve the LAN with: make run ARGS="--host 0.0.0.0"
run: $(RUNTIME_STAMP) $(CERTS)/server.pem
	$(BIN)/parley-server $(ARGS)

client: $(RUNTIME_STAMP)
	$(BIN)/parley $(ARGS)

# The wheel and the sdist, into dist/ (what a user installs with pip or pipx).
dist: $(DEV_STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

# The desktop client as one executable, dist/parley (PyInstaller, for this OS only),
# built from the wheel in a venv of its own so PyInstaller never enters .venv.
ONEFILE_VENV        := .venv-onefile
PYINSTALLER_VERSION := 6.22.3
onefile: dist
	rm -rf $(ONEFILE_VENV)
	$(PYTHON) -m venv $(ONEFILE_VENV)
	$(ONEFILE_VENV)/bin/python -m pip install -q -c requirements.txt \
	  pyinstaller==$(PYINSTALLER_VERSION) "$$(ls dist/parley_chat-*.whl)[gui]"
	cd dist && ../$(ONEFILE_VENV)/bin/python -m parley_chat.onefile --build .

# System packages the GUI and PostgreSQL tests need: installed when root and missing,
# otherwise named. postgresql: the store suite also runs on a real PostgreSQL server that
# tests/pgserver.py starts with initdb and pg_ctl (the Debian service itself is not used).
# fonts-noto-color-emoji: the desktop client draws colour emoji from it (without it,
# emoji fall back to text and the emoji-image test is skipped).
sysdeps:
	@missing=""; \
	command -v Xvfb >/dev/null 2>&1 || missing="$$missing xvfb"; \
	command -v xdotool >/dev/null 2>&1 || missing="$$missing xdotool"; \
	fc-list 2>/dev/null | grep -qi "Noto Color Emoji" || missing="$$missing fonts-noto-color-emoji"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing fonts-dejavu-core >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (install them: sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

# The suite runs on PYTEST_WORKERS processes (pytest-xdist; 1 = one process, no xdist).
# Four on this two-core machine, as many tests wait on sockets and processes: on the quiet
# machine, 159 s on four and 169 s on three (main before: 182 s on three); earlier, 233 s
# on three, 239 s on four, 284 s on two (docs/decisions.md). --dist loadgroup: one queue, a test at a time to the
# worker that has two or fewer, the long ones first (tests/conftest.py START_FIRST), and
# the tests of one xdist_group (the wheel's) on one worker.
# PYTHONHASHSEED=0: every worker must collect the tests in one order.
# PYTHONDONTWRITEBYTECODE is dropped: the suite starts hundreds of Python processes
# (servers, clients, the admin and logs tools) that import the same modules, and each
# worker's collection rewrites every test module's asserts; without byte code caches
# each of them compiles it all again (collection alone: 8.7 s of CPU a worker, 2.4 s).
PYTEST_WORKERS ?= 4
test: $(DEV_STAMP) sysdeps $(SSLYZE_STAMP)
	env -u DISPLAY -u PYTHONDONTWRITEBYTECODE PYTHONHASHSEED=0 $(PY) -m pytest $(if $(filter 1,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

# The property-based tests (hypothesis) with the deep profile (tests/budget.py): 30 times
# the examples `make test` draws, for a long look at the protocol's decoders.
fuzz-deep: $(DEV_STAMP)
	env -u DISPLAY HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q -p no:randomly \
	  tests/protocol tests/client/test_cli.py $(PYTEST_ARGS)

# ruff, then mypy over the package as it installs (pyproject.toml [tool.mypy]):
# tools/mypy_tree.py first links the top-level folders into build/mypy/parley_chat.
# CI (.ci/run) runs this beside `make test` and fails when it fails.
MYPY_TREE := build/mypy
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/mypy_tree.py $(MYPY_TREE)
	$(VENV)/bin/mypy

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format .

screenshots: $(DEV_STAMP) sysdeps
	env -u DISPLAY $(PY) -m pytest -q tests/client/gui -k screenshot --screenshots=artifacts

bench: $(DEV_STAMP) $(CERTS)/server.pem
	$(PY) -m bench

# Coverage-guided fuzzing of the protocol decoder (atheris), FUZZ_SECONDS long
# (default 60), in a venv of its own so atheris never enters the project's.
# New interesting inputs go to bench/fuzz/corpus, crashes to bench/fuzz/crashes
# (neither is committed); the seeds in bench/fuzz/seeds are only read.
fuzz:
	@test -f .venv-fuzz/.installed || { \
	  $(PYTHON) -m venv .venv-fuzz && \
	  .venv-fuzz/bin/pip install -q atheris -r requirements.txt -e . && \
	  touch .venv-fuzz/.installed; }
	mkdir -p bench/fuzz/corpus bench/fuzz/crashes
	.venv-fuzz/bin/python bench/fuzz_protocol.py -max_total_time=$${FUZZ_SECONDS:-60} \
	  -dict=bench/fuzz/json.dict -artifact_prefix=bench/fuzz/crashes/ \
	  bench/fuzz/corpus bench/fuzz/seeds

# The scale issue's load matrix, parley and ngIRCd side by side in one run
# (ngIRCd is installed with apt-get when root and missing). 5-10 minutes;
# pick scenarios and sizes with e.g. ARGS="--only a,c --scale 0.5 --json load.json".
bench-load: $(DEV_STAMP)
	$(PY) -m bench.loadgen matrix $(ARGS)

# The same matrix against ngIRCd alone.
bench-peer: $(DEV_STAMP)
	$(PY) -m bench.peer $(ARGS)

# One node against two nodes sharing PostgreSQL, the same load in one run
# (PostgreSQL from the postgresql package, started in a temp dir like the tests').
bench-nodes: $(DEV_STAMP)
	$(PY) -m bench.nodes $(ARGS)

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) $(ONEFILE_VENV) .pytest_cache artifacts build dist *.egg-info
