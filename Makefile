# Unicom toolkit. Every target installs first, so each one works alone on a fresh machine.
# Override any variable on the command line, e.g.
#   make cluster DATA='/data/laion/{00000..00099}.tar' OUT=runs/laion K=1000000 \
#                MODEL=ViT-L-14 PRETRAINED=/weights/open_clip_pytorch_model.bin NPROC=8
#   make train CONFIG=configs/vit_b32_laion400m.yaml DATA=... OUT=runs/laion RUN=runs/b32 NPROC=8

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

# Data and outputs (defaults: the embedded sample set)
SAMPLE_DIR  ?= data/sample
DATA        ?= $(SAMPLE_DIR)/shards
OUT         ?= runs/cluster
RUN         ?= runs/train
EVAL_OUT    ?= runs/eval

# Clustering (paper: 1M classes for LAION-400M; the sample set needs few)
MODEL       ?= TinyCLIP-demo
PRETRAINED  ?= none
K           ?= 48
METHOD      ?= flat
CLUSTER_ARGS ?=

# Training
CONFIG      ?= configs/demo.yaml
# --resume continues RUN from its latest checkpoint (and starts fresh in an empty RUN), so an
# interrupted `make train` picks up where it stopped and a finished one is not redone.
RESUME      ?= --resume
TRAIN_ARGS  ?=

# Evaluation
BENCHMARK   ?= sample
DATA_ROOT   ?= $(SAMPLE_DIR)
ENCODER     ?= $(RUN)/export
EVAL_ARGS   ?=

# Launch: one process runs plainly; NPROC>1 (or multi-node TORCHRUN_ARGS) goes through torchrun.
NPROC        ?= 1
TORCHRUN_ARGS ?= --standalone
LAUNCH = $(if $(filter 1,$(NPROC)),$(PY) -m,$(VENV)/bin/torchrun $(TORCHRUN_ARGS) --nproc_per_node $(NPROC) -m)

PYTEST_ARGS ?=

.PHONY: install test test-slow sample clip cluster train eval demo ablation bench clean help

help:
	@echo "make demo      install, make the sample set, pretrain a tiny CLIP, cluster, train, evaluate, write a report"
	@echo "make test      run the test suite (CPU, offline)"
	@echo "make sample | clip | cluster | train | eval | bench | ablation | clean"

install: $(STAMP)

# Idempotent: reinstalls only when pyproject.toml changes (or .venv is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

$(SAMPLE_DIR)/manifest.json: | $(STAMP)
	$(PY) -m unicom.sample_data --out $(SAMPLE_DIR)

sample: install $(SAMPLE_DIR)/manifest.json

# make clip: pretrain the tiny CLIP (TinyCLIP-demo) on the sample shards' image-caption pairs, for
# `make cluster PRETRAINED=$(CLIP_WEIGHTS)` (the demo's clustering model). Deterministic, CPU, cached:
# retrained only when the shards or the settings differ from those recorded beside the weights.
CLIP_WEIGHTS ?= runs/clip/tinyclip_demo.safetensors
CLIP_ARGS    ?=

clip: install $(SAMPLE_DIR)/manifest.json
	$(PY) -m unicom.demo.clip_pretrain --data '$(SAMPLE_DIR)/shards' --output $(CLIP_WEIGHTS) $(CLIP_ARGS)

# The sample set is made on demand only when DATA points into it.
NEED_SAMPLE = $(if $(findstring $(SAMPLE_DIR),$(DATA) $(DATA_ROOT)),$(SAMPLE_DIR)/manifest.json)

cluster: install $(NEED_SAMPLE)
	$(LAUNCH) clustering.cli --data '$(DATA)' --out $(OUT) --k $(K) --model $(MODEL) \
		--pretrained $(PRETRAINED) --method $(METHOD) $(CLUSTER_ARGS)

$(OUT)/labels/class_sizes.npy: | $(STAMP)
	$(MAKE) cluster

train: install $(NEED_SAMPLE) $(OUT)/labels/class_sizes.npy
	$(LAUNCH) unicom.train.cli --config $(CONFIG) --data '$(DATA)' --labels $(OUT)/labels \
		--output $(RUN) $(RESUME) $(TRAIN_ARGS)

$(RUN)/export/config.json: | $(STAMP)
	$(MAKE) train

eval: install $(NEED_SAMPLE) $(if $(filter $(RUN)/export,$(ENCODER)),$(RUN)/export/config.json)
	$(PY) -m retrieval_eval.cli --benchmark $(BENCHMARK) --data-root $(DATA_ROOT) --model $(ENCODER) \
		--output $(EVAL_OUT)/$(BENCHMARK).json $(EVAL_ARGS)

demo: install
	$(PY) -m unicom.demo --make "$(MAKE)" --sample-dir $(SAMPLE_DIR) --output runs/demo --clip-pretrained $(CLIP_WEIGHTS)

ablation: install
	$(PY) benchmarks/ablation.py --sample-dir $(SAMPLE_DIR) --out runs/ablation

bench: install
	$(PY) benchmarks/partial_fc.py --quick
	$(PY) benchmarks/kmeans.py --quick
	$(PY) benchmarks/extraction.py --quick
	$(PY) benchmarks/knn_search.py --quick
	$(PY) benchmarks/train_throughput.py --quick

clean:
	rm -rf runs data/sample .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
