# Every target sets itself up: it creates .venv when missing and installs torch first (pinned,
# so pip never pulls a multi-GB CUDA build by accident), then the project with its extras.
# On a DGX, bring your own CUDA build:  make test TORCH="torch==2.9.1 --index-url <cu130 index>"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,postgres
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst /,_,$(subst $(space),_,$(TORCH)))-$(subst $(comma),_,$(EXTRAS))
PYTEST_ARGS ?=
empty :=
space := $(empty) $(empty)
comma := ,

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install test lint format demo bench bench-publish serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

# Coverage: branch coverage of dgx_music, report in the terminal and coverage.xml, then the
# floors (overall and per package) in scripts/check_coverage.py fail the target when missed.
test: lint
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest --cov=dgx_music --cov-branch --cov-report=term --cov-report=xml $(PYTEST_ARGS)
	$(BIN)/python scripts/check_coverage.py

demo: $(STAMP)
	$(BIN)/dgx-music generate "warm lofi hip hop groove, 84 bpm in A minor" \
		--model synth --duration 8 --seed 42

serve: $(STAMP)
	$(BIN)/dgx-music serve

bench: $(STAMP)
	$(BIN)/asv machine --yes
	$(BIN)/asv run --python=same --set-commit-hash $$(git rev-parse HEAD)

# asv's site loads jQuery, flot and bootstrap from CDNs; vendor them (from npm, cached in
# .asv/vendor-cache) so the published site works with no internet.
bench-publish: $(STAMP)
	$(BIN)/asv publish
	$(BIN)/python scripts/publish_offline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage htmlcov
