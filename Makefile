# bitbatch: every target installs what it needs into the project's own
# virtual environments, so a fresh clone needs only Python 3.13 and git.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.13, so the tests and `sam build` use it too.
# pyenv shims fail unless a version is selected, so try the shim with
# PYENV_VERSION, then pyenv's own path, then whatever python3.13 is on PATH.
PYTHON313 := $(shell \
	if PYENV_VERSION=3.13.0 python3.13 -c 'import sys' >/dev/null 2>&1; then \
	  PYENV_VERSION=3.13.0 python3.13 -c 'import sys; print(sys.executable)'; \
	elif command -v pyenv >/dev/null 2>&1 && [ -x "$$(pyenv root)/versions/3.13.0/bin/python3.13" ]; then \
	  echo "$$(pyenv root)/versions/3.13.0/bin/python3.13"; \
	elif command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys' >/dev/null 2>&1; then \
	  command -v python3.13; \
	fi)

VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv demo serve test lint build clean

help:
	@echo "make demo   run one real push through the whole pipeline on this machine"
	@echo "make serve  keep the local stack running (PORT=, SECRET=, REPOS=<dir>)"
	@echo "make test   run unit, handler and end-to-end tests (no AWS account needed)"
	@echo "make lint   ruff on the Python code, sam validate --lint and cfn-lint on template.yaml"
	@echo "make build  sam build (no container needed)"

check-python:
	@if [ -z "$(PYTHON313)" ]; then \
	  echo "error: python3.13 not found. Install Python 3.13 (the Lambda runtime version) and put python3.13 on PATH." >&2; \
	  exit 1; \
	fi

$(VENV)/.installed: requirements-dev.txt functions/requirements.txt container/requirements.txt pyproject.toml | check-python
	"$(PYTHON313)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt | check-python
	"$(PYTHON313)" -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.txt
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/python -m bitbatch_local demo $(if $(REPO),--repo "$(REPO)")

serve: $(VENV)/.installed
	$(VENV)/bin/python -m bitbatch_local serve $(if $(PORT),--port "$(PORT)") $(if $(SECRET),--secret "$(SECRET)") $(if $(REPOS),--repos "$(REPOS)")

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(SAM_VENV)/.installed $(VENV)/.installed
	$(VENV)/bin/ruff check functions container local tests
	$(SAM) validate --lint --template-file template.yaml --region us-east-1
	$(SAM_VENV)/bin/cfn-lint template.yaml

build: $(SAM_VENV)/.installed $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(SAM) build --template-file template.yaml

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .local
