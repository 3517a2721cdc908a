# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv (Python 3.10, selected by .python-version through pyenv) with .[lava,dev,lightning].
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if command -v pyenv >/dev/null 2>&1; then PYENV_VERSION=$(PYTHON_VERSION) pyenv exec python -m venv $(VENV); \
	  else python3.10 -m venv $(VENV); fi; fi
	$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 10), "Lava needs Python 3.10, got " + sys.version'
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lava,dev,lightning]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m snntorch_loihi.cli demo

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
