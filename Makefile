# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo demo-lane-1 demo-lane-2 demo-pretrained demo-pretrained-lane-1 \
	demo-pretrained-lane-2 test test-all lint clean

install: $(STAMP)

# Re-installs only when the project definition changes; torch first so pip takes the
# release that lies on this machine's disk instead of downloading a CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev,mlflow,weights,scale]"
	touch $(STAMP)

# The main job end to end on the built-in demo competition, in a fresh ./demo workspace.
# The runs that do not depend on each other go in two lanes at once, one thread each
# (`--threads 1`): on 2 cores that beats one run on two threads (benchmarks: docs/benchmarks.md).
DEMO := $(BIN)/python -m comp --workspace demo
DEMO_LANE := $(DEMO) --threads 1

demo: install
	rm -rf demo
	$(DEMO) init --demo
	$(DEMO) folds
	$(MAKE) --no-print-directory -j2 demo-lane-1 demo-lane-2
	$(DEMO) blend --method stack --name demo_blend
	$(DEMO) leaderboard
	$(DEMO) submit
	$(DEMO) report

demo-lane-1:
	$(DEMO_LANE) run huse --fold all --set epochs=3 --set length_buckets=true --set image_size=16 --set max_len=64 --set channels_last=false
	$(DEMO_LANE) run tfidf --fold all
	$(DEMO_LANE) run fasttext --fold all

demo-lane-2:
	$(DEMO_LANE) run bert --fold all --set epochs=3 --set length_buckets=true
	$(DEMO_LANE) run image --fold all --set backbone=resnet10t --set image_size=24 --set epochs=2 --set channels_last=false
	$(DEMO_LANE) run boost --fold all --set from=bert,image
	$(DEMO_LANE) run tabnn --fold all --set from=bert,image --set arch=resnet

# The pretrained path end to end, offline, on the English demo in ./demo-pretrained: the
# packaged MiniLM fine-tuned (bert) and frozen with EfficientNet-Lite0 (embed), boost and
# tabnn on the frozen embeddings, HUSE with both towers pretrained, tfidf, and the blend.
# About 25 minutes on 2 cores (docs/benchmarks.md).
DEMO_EN := $(BIN)/python -m comp --workspace demo-pretrained
DEMO_EN_LANE := $(DEMO_EN) --threads 1
MINILM := all-MiniLM-L6-v2
LITE0 := tf_efficientnet_lite0

demo-pretrained: install
	rm -rf demo-pretrained
	$(DEMO_EN) init --demo --language en
	$(DEMO_EN) folds
	$(DEMO_EN) weights
	$(MAKE) --no-print-directory -j2 demo-pretrained-lane-1 demo-pretrained-lane-2
	$(DEMO_EN) blend --name blend
	$(DEMO_EN) leaderboard
	$(DEMO_EN) submit
	$(DEMO_EN) report

demo-pretrained-lane-1:
	$(DEMO_EN_LANE) run embed --fold all --name embed --set text_backbone=$(MINILM) \
	  --set image_backbone=$(LITE0) --set image_size=128
	$(DEMO_EN_LANE) run boost --fold all --name boost_embed --set from=embed
	$(DEMO_EN_LANE) run tabnn --fold all --name tabnn_embed --set from=embed --set arch=resnet
	$(DEMO_EN_LANE) run tfidf --fold all --name tfidf
	$(DEMO_EN_LANE) run huse --fold all --name huse_pretrained --set text_backbone=$(MINILM) \
	  --set image_backbone=$(LITE0) --set image_pretrained=true --set sem_encoder=backbone \
	  --set freeze_layers=4 --set freeze_blocks=4 --set image_size=64 --set max_len=64 \
	  --set epochs=2 --set length_buckets=true --set channels_last=false

demo-pretrained-lane-2:
	$(DEMO_EN_LANE) run bert --fold all --name bert_minilm --set backbone=$(MINILM) --set epochs=4 \
	  --set max_len=64 --set body_lr=2e-4 --set lr=3e-3 --set freeze_layers=2 --set length_buckets=true

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
