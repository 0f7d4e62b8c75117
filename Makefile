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
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv tools demo serve test lint build build-image clean

help:
	@echo "make demo   run one real push through the whole pipeline on this machine"
	@echo "make serve  keep the local stack running (PORT=, SECRET=, REPOS=<dir>)"
	@echo "make test   run unit, handler and end-to-end tests (no AWS account needed)"
	@echo "make lint   ruff, sam validate --lint, cfn-lint and checkov on the templates, hadolint on the Dockerfile"
	@echo "make build  sam build (no container needed)"
	@echo "make tools  install every pinned tool: .venv, .venv-sam and .venv-checkov"
	@echo "make build-image IMAGE=<repository-uri>:<tag>  docker build of the job image for linux/amd64"

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

# checkov pins older versions of packages that aws-sam-cli needs too, so it gets its own environment.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt | check-python
	"$(PYTHON313)" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

venv: $(VENV)/.installed

# Every pinned tool the checks use; CodeBuild installs them in its install phase.
tools: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/python -m bitbatch_local demo $(if $(REPO),--repo "$(REPO)")

serve: $(VENV)/.installed
	$(VENV)/bin/python -m bitbatch_local serve $(if $(PORT),--port "$(PORT)") $(if $(SECRET),--secret "$(SECRET)") $(if $(REPOS),--repos "$(REPOS)")

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# BC_SKIP_MAPPING=TRUE stops checkov from fetching its check metadata over the network.
# Each finding checkov accepts is suppressed in the template, next to the resource, with its reason.
lint: $(SAM_VENV)/.installed $(VENV)/.installed $(CHECKOV_VENV)/.installed
	$(VENV)/bin/ruff check functions container local tests cicd cli bench
	$(SAM) validate --lint --template-file template.yaml --region us-east-1
	$(SAM) validate --lint --template-file cicd/template.yaml --region us-east-1
	$(SAM_VENV)/bin/cfn-lint template.yaml cicd/template.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-path .aws-sam \
	  --framework cloudformation --file template.yaml --file cicd/template.yaml
	$(CHECKOV_VENV)/bin/hadolint container/Dockerfile

build: $(SAM_VENV)/.installed $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(SAM) build --template-file template.yaml

# The job definition runs on X86_64, so the image is built for linux/amd64 on any machine.
build-image:
	@if [ -z "$(IMAGE)" ]; then \
	  echo "error: IMAGE is missing. Run make build-image IMAGE=<repository-uri>:<tag>, for example IMAGE=bitbatch-job:dev." >&2; \
	  exit 1; \
	fi
	docker build --platform linux/amd64 --tag "$(IMAGE)" container/

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .local
