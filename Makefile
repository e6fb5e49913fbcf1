# fracture_d2: `make demo` and `make test` set everything up on first use.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.fracture_d2-setup
# Scripts in tools/ and datasets/ import the package from this checkout, installed or not.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: setup demo serve test lint format clean wheelhouse

setup: $(STAMP)

$(STAMP): requirements.txt setup.py tools/setup_env.sh
	PYTHON=$(PY) VENV=$(VENV) bash tools/setup_env.sh
	touch $@

demo: setup
	$(PYTHON) tools/demo.py

# The REST service on the demo's model (after make demo): make serve [PORT=8000] [WEIGHTS=...]
serve: setup
	$(PYTHON) tools/serve.py --port $(or $(PORT),8000) \
		--config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \
		MODEL.WEIGHTS $(or $(WEIGHTS),output/demo/model_final.pth)

test: setup
	$(PYTHON) -m pytest tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/black --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/black .

# Wheels for another Python/machine without internet: make wheelhouse PYV=3.12
wheelhouse: setup
	PYV=$(or $(PYV),3.12) VENV=$(VENV) bash tools/make_wheelhouse.sh

clean:
	rm -rf output/demo datasets/mura_synthetic .pytest_cache
