# Two commands on a fresh machine (see README):
#   make demo   runs the main job on the embedded demonstration data
#   make test   runs the whole test suite
# Both create .venv and install the package with its test extras once.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) recipes/ESC50/demo.py --output_folder demo_output

# SpeechBrain's own linter configs (beside the repository, as CI has them).
UPSTREAM ?= ../shared/speechbrain-upstream
UPSTREAM_LINTED := fastast_sb recipes hparams

lint: $(STAMP)
	$(PY) -m ruff check fastast_sb recipes tests
	$(PY) -m ruff format --check fastast_sb recipes tests
	@if [ -d "$(UPSTREAM)" ]; then \
		set -e; \
		echo "yamllint and codespell with $(UPSTREAM)'s configs"; \
		$(VENV)/bin/yamllint --strict -c "$(UPSTREAM)/.yamllint.yaml" \
			$(UPSTREAM_LINTED); \
		$(VENV)/bin/codespell \
			--ignore-words="$(UPSTREAM)/.dict-speechbrain.txt" \
			--ignore-words-list=passt --skip="*.ipynb" \
			--ignore-regex='base64,.*?==' $(UPSTREAM_LINTED); \
	else \
		echo "skipping yamllint/codespell: $(UPSTREAM) not found"; \
	fi

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_output
