# Unicom toolkit. Every target installs first, so each one works alone on a fresh machine.
# Override any variable on the command line, e.g.
#   make cluster DATA='/data/laion/{00000..00099}.tar' OUT=runs/laion K=1000000 \
#                CLIP_MODEL=ViT-L-14 CLIP_PRETRAINED=openai NPROC=8
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

# Clustering (paper: 1M classes for LAION-400M; the sample set needs few). MODEL and
# PRETRAINED are the old names of CLIP_MODEL and CLIP_PRETRAINED, still honoured.
CLIP_MODEL      ?= $(or $(MODEL),TinyCLIP-demo)
CLIP_PRETRAINED ?= $(or $(PRETRAINED),none)
K           ?= 48
NUM_CLUSTERS ?= $(K)
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

# Embedding for search (unicom-embed): the encoder ENCODER over EMBED_DATA into EMBED_OUT,
# then an index of INDEX_TYPE (a short name, auto, or a faiss factory string such as
# 'IVF4096,PQ64'); EMBED_ARGS adds flags, e.g. EMBED_ARGS='--max-index-memory 4GB'.
EMBED_DATA  ?= $(DATA)
EMBED_OUT   ?= runs/embed
INDEX_TYPE  ?= auto
EMBED_ARGS  ?=

# Launch: through torchrun whenever TORCHRUN_ARGS is given (e.g. one process per node on
# several nodes: NPROC=1 TORCHRUN_ARGS='--nnodes 4 --node_rank R --master_addr H --master_port P')
# or NPROC > 1 (then --standalone by default); otherwise one plain process.
NPROC        ?= 1
TORCHRUN_ARGS ?=
USE_TORCHRUN = $(or $(strip $(TORCHRUN_ARGS)),$(filter-out 1,$(strip $(NPROC))))
LAUNCH = $(if $(USE_TORCHRUN),$(VENV)/bin/torchrun $(or $(strip $(TORCHRUN_ARGS)),--standalone) \
	--nproc_per_node $(NPROC) -m,$(PY) -m)

PYTEST_ARGS ?=

.PHONY: install test test-slow sample clip cluster train eval embed demo serve ablation bench clean help

help:
	@echo "make demo      install, make the sample set, pretrain a tiny CLIP, cluster, train, evaluate, write a report"
	@echo "make test      run the test suite (CPU, offline)"
	@echo "make lint      ruff and mypy (CI runs it before the tests)"
	@echo "make serve     search the index and browse the pseudo classes that make demo leaves, at http://127.0.0.1:8000/"
	@echo "make sample | clip | cluster | train | finetune | eval | embed | bench | ablation | clean"

install: $(STAMP)

# Idempotent: reinstalls only when pyproject.toml changes (or .venv is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

# ruff (pycodestyle, pyflakes, import order, bugbear, complexity <= 15) and mypy on the public
# API, both configured in pyproject.toml. CI runs it before the tests.
.PHONY: lint
lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

$(SAMPLE_DIR)/manifest.json: | $(STAMP)
	$(PY) -m unicom.sample_data --output $(SAMPLE_DIR)

sample: install $(SAMPLE_DIR)/manifest.json

# make clip: pretrain the tiny CLIP (TinyCLIP-demo) on the sample shards' image-caption pairs, for
# `make cluster CLIP_PRETRAINED=$(CLIP_WEIGHTS)` (the demo's clustering model). Deterministic, CPU, cached:
# retrained only when the shards or the settings differ from those recorded beside the weights.
CLIP_WEIGHTS ?= runs/clip/tinyclip_demo.safetensors
CLIP_ARGS    ?=

clip: install $(SAMPLE_DIR)/manifest.json
	$(PY) -m unicom.demo.clip_pretrain --data '$(SAMPLE_DIR)/shards' --output $(CLIP_WEIGHTS) $(CLIP_ARGS)

# The sample set is made on demand only when DATA points into it.
NEED_SAMPLE = $(if $(findstring $(SAMPLE_DIR),$(DATA) $(DATA_ROOT)),$(SAMPLE_DIR)/manifest.json)

cluster: install $(NEED_SAMPLE)
	$(LAUNCH) clustering.cli --data '$(DATA)' --output $(OUT) --num-clusters $(NUM_CLUSTERS) \
		--clip-model $(CLIP_MODEL) --clip-pretrained $(CLIP_PRETRAINED) --method $(METHOD) $(CLUSTER_ARGS)

$(OUT)/labels/class_sizes.npy: | $(STAMP)
	$(MAKE) cluster

train: install $(NEED_SAMPLE) $(OUT)/labels/class_sizes.npy
	$(LAUNCH) unicom.train.cli --config $(CONFIG) --data '$(DATA)' --labels $(OUT)/labels \
		--output $(RUN) $(RESUME) $(TRAIN_ARGS)

$(RUN)/export/config.json: | $(STAMP)
	$(MAKE) train

eval: install $(NEED_SAMPLE) $(if $(filter $(RUN)/export,$(ENCODER)),$(RUN)/export/config.json)
	$(PY) -m retrieval_eval.cli --benchmark $(BENCHMARK) --data-root $(DATA_ROOT) --model $(ENCODER) \
		--output $(EVAL_OUT)/$(BENCHMARK) $(EVAL_ARGS)

# NPROC > 1 shares the shards (or pieces of an image folder) over torchrun ranks, one GPU each
embed: install $(NEED_SAMPLE) $(if $(filter $(RUN)/export,$(ENCODER)),$(RUN)/export/config.json)
	$(LAUNCH) unicom.embed.cli --model $(ENCODER) --data '$(EMBED_DATA)' --output $(EMBED_OUT) \
		--index-type '$(INDEX_TYPE)' $(EMBED_ARGS)

demo: install
	$(PY) -m unicom.demo --make "$(MAKE)" --sample-dir $(SAMPLE_DIR) --output runs/demo --clip-pretrained $(CLIP_WEIGHTS)

# make serve: the search service and its page (docs/serve.md) on an index and a cluster output; the
# defaults are what `make demo` leaves. CLUSTERS is left out when it holds no pseudo classes.
#   make serve INDEX=runs/photos CLUSTERS= PORT=8080 SERVE_ARGS='--device cuda'
INDEX       ?= runs/demo/index
CLUSTERS    ?= runs/demo/cluster
PORT        ?= 8000
SERVE_ARGS  ?=

serve: install
	$(PY) -m unicom.serve.cli $(if $(strip $(INDEX)),--index $(INDEX)) \
		$(if $(wildcard $(CLUSTERS)/labels/class_sizes.npy),--clusters $(CLUSTERS)) --port $(PORT) $(SERVE_ARGS)

ablation: install
	$(PY) benchmarks/ablation.py --sample-dir $(SAMPLE_DIR) --output runs/ablation --clip-pretrained $(CLIP_WEIGHTS)

bench: install
	$(PY) benchmarks/partial_fc.py --quick
	$(PY) benchmarks/kmeans.py --quick
	$(PY) benchmarks/extraction.py --quick
	$(PY) benchmarks/knn_search.py --quick
	$(PY) benchmarks/train_throughput.py --quick
	$(PY) benchmarks/index_scale.py --quick

clean:
	rm -rf runs data/sample .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info

# ---- make finetune: fine-tune a released encoder on a labelled dataset (docs/training.md, "Fine-tuning")
#   make finetune DATASET=sop DATA_ROOT=/data/Stanford_Online_Products ENCODER=ViT-B/32 NPROC=8
# DATASET: sop | inshop | inaturalist | cub | cars | gldv2 | image_folder | csv. The preset is
# configs/finetune/DATASET_ENCODER.yaml (ViT-L/14@336px → vit_l14_336; e.g. gldv2_vit_l14_336.yaml) when there is one, else
# configs/finetune/custom.yaml (the architecture taken from ENCODER). FT_ARGS: more flags/overrides.
FT_TAG    = $(subst @336px,_336,$(subst /,,$(subst -,_,$(subst ViT,vit,$(subst B/,b/,$(subst L/,l/,$(ENCODER)))))))
FT_CONFIG ?= $(firstword $(wildcard configs/finetune/$(DATASET)_$(FT_TAG).yaml) configs/finetune/custom.yaml)
FT_RUN    ?= runs/finetune/$(DATASET)
FT_ARGS   ?=
.PHONY: finetune
finetune: install
	$(if $(DATASET),,$(error make finetune needs DATASET=sop|inshop|inaturalist|cub|cars|gldv2|image_folder|csv))
	$(LAUNCH) unicom.train.cli --config $(FT_CONFIG) --dataset $(DATASET) --data-root '$(DATA_ROOT)' \
		--model '$(ENCODER)' --output $(FT_RUN) $(RESUME) $(FT_ARGS)
