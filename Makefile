# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both create .venv when missing and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nettrim-installed
DATA := $(VENV)/share/datasets

.PHONY: demo test fuzz bench fashion-mnist clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray,hf,data]'
	touch $(STAMP)

demo: $(STAMP) fashion-mnist
	$(VENV)/bin/nettrim demo

test: $(STAMP) fashion-mnist
	$(PY) -m pytest -q

# The long profile of the hostile-input suite (tests/reliability, ten times the examples), with
# the kill-and-resume, determinism and pickle-payload tests; their counts go to
# docs/reliability.json, and docs/reliability.md is generated from it.
fuzz: $(STAMP) fashion-mnist
	rm -f docs/reliability.json
	HYPOTHESIS_PROFILE=fuzz NETTRIM_RELIABILITY_OUT=docs/reliability.json $(PY) -m pytest -q -p no:cacheprovider tests/reliability -m "slow or not slow"
	$(PY) scripts/reliability_doc.py

bench: $(STAMP)
	$(PY) benchmarks/default_config.py

# Fashion-MNIST: Debian's dataset-fashion-mnist, unpacked into the environment (no root needed).
fashion-mnist: $(STAMP)
	scripts/install-fashion-mnist $(DATA)

clean:
	rm -rf $(VENV) runs
