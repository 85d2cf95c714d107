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

BENCH_MACHINE ?=
BENCH_CONFIG ?= asv.conf.json
BASE ?= main
HEAD ?= HEAD
BENCH_FACTOR ?= 1.1
BENCH_CONFIRM_FACTOR ?= 1.1
BENCH_CPU ?=

.PHONY: install test lint format demo corpus bench publish bench-compare bench-check serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	# Compile librosa's numba code into its on-disk cache now (20-30 s on 2 cores), so the first
	# analysis of every later process, a test worker's or a service worker's, only loads it.
	$(BIN)/python -c "from dgx_music.audio import metadata; metadata.warm_up()"
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks benchgate scripts
	$(BIN)/ruff format --check src tests benchmarks benchgate scripts

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks benchgate scripts
	$(BIN)/ruff check --fix src tests benchmarks benchgate scripts

# Coverage: branch coverage of dgx_music, report in the terminal and coverage.xml, then the
# floors (overall and per package) in scripts/check_coverage.py fail the target when missed.
# Bytecode is cached for the run even where PYTHONDONTWRITEBYTECODE is set (it is on our runners):
# otherwise every test worker rewrites every test module and every subprocess recompiles the package.
test: lint
	rm -f .coverage .coverage.*
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest --cov=dgx_music --cov-branch --cov-report=term --cov-report=xml $(PYTEST_ARGS)
	$(BIN)/python scripts/check_coverage.py

# The real-music corpus (docs/ANALYSIS.md): 136 clips rendered by FluidSynth into
# ~/.cache/dgx-music (or $$DGX_MUSIC_CORPUS_DIR), 2-3 min once; the held-out accuracy test and the
# accuracy benchmarks read it (and build it themselves when it is missing).
corpus: $(STAMP)
	$(BIN)/python -m benchmarks.real_music build

demo: $(STAMP)
	$(BIN)/dgx-music generate "warm lofi hip hop groove, 84 bpm in A minor" \
		--model synth --duration 8 --seed 42

serve: $(STAMP)
	$(BIN)/dgx-music serve

# The whole asv suite for the checked-out commit, in an asv-managed virtualenv (keyed by the
# Python and torch versions), then the offline site and a table of headline figures.
# On a DGX: make bench BENCH_MACHINE=dgx-spark-01 BENCH_CONFIG=asv.cuda.conf.json (docs/BENCHMARKING.md)
bench: $(STAMP)
	$(BIN)/python -m benchgate run --config $(BENCH_CONFIG) \
		$(if $(BENCH_MACHINE),--machine $(BENCH_MACHINE))

# The site (.asv/html) from results/ alone: asv publish plus the asv-tachyon viewer, no CDN.
publish: $(STAMP)
	$(BIN)/python -m benchgate publish

# The pull-request gate: exit 1 when HEAD is slower or bigger than BASE beyond BENCH_FACTOR.
bench-compare: $(STAMP)
	$(BIN)/python -m benchgate compare $(BASE) $(HEAD) --factor $(BENCH_FACTOR) \
		--confirm-factor $(BENCH_CONFIRM_FACTOR) \
		--config $(BENCH_CONFIG) $(if $(BENCH_MACHINE),--machine $(BENCH_MACHINE)) \
		$(if $(BENCH_CPU),--cpu-affinity $(BENCH_CPU))

# CI's guard of the suite: asv check and a quick pass with and without PostgreSQL.
bench-check: $(STAMP)
	$(BIN)/python -m benchgate check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage htmlcov
