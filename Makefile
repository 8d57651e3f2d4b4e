# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint bench clean

install: $(STAMP)

# Re-installs only when the project definition changes; torch first so pip takes the
# release that lies on this machine's disk instead of downloading a CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

# The main job end to end on the built-in demo competition, in a fresh ./demo workspace.
demo: install
	rm -rf demo
	$(BIN)/python -m comp --workspace demo init --demo
	$(BIN)/python -m comp --workspace demo folds
	$(BIN)/python -m comp --workspace demo run fasttext --fold all
	$(BIN)/python -m comp --workspace demo run tfidf --fold all
	$(BIN)/python -m comp --workspace demo run bert --fold all --set epochs=3 --set length_buckets=true
	$(BIN)/python -m comp --workspace demo run image --fold all --set backbone=resnet10t --set image_size=24 --set epochs=2
	$(BIN)/python -m comp --workspace demo blend --method stack --name demo_blend --explain
	$(BIN)/python -m comp --workspace demo leaderboard
	$(BIN)/python -m comp --workspace demo submit

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

lint: install
	$(BIN)/ruff check comp tests benchmarks

clean:
	rm -rf $(VENV) demo .pytest_cache
