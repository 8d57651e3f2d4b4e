# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test test-all lint bench clean

install: $(STAMP)

# Re-installs only when the project definition changes; torch first so pip takes the
# release that lies on this machine's disk instead of downloading a CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev,mlflow]"
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
	$(BIN)/python -m comp --workspace demo run huse --fold all --set epochs=3 --set length_buckets=true --set image_size=24 --set max_len=64
	$(BIN)/python -m comp --workspace demo run boost --fold all --set from=bert,image
	$(BIN)/python -m comp --workspace demo run tabnn --fold all --set from=bert,image --set arch=resnet
	$(BIN)/python -m comp --workspace demo blend --method stack --name demo_blend --explain
	$(BIN)/python -m comp --workspace demo leaderboard
	$(BIN)/python -m comp --workspace demo submit
	$(BIN)/python -m comp --workspace demo report

# Headless Chromium for the browser test of `comp report`: installed when missing and this
# is a root Debian machine; elsewhere that one test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "no chromium: the browser test of comp report is skipped"

test: install browser
	$(BIN)/python -m pytest -q

test-all: install browser
	$(BIN)/python -m pytest -q -m ""

lint: install
	$(BIN)/ruff check comp tests benchmarks

clean:
	rm -rf $(VENV) demo .pytest_cache
