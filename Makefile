# tingxie: the commands that matter. `make test` runs every test; `make run` transcribes a
# sample with the default model. Set CARGO_TARGET_DIR to share a build directory.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
MODEL ?= models/whisper-tiny-en
MODEL_HF ?= models/whisper-tiny-en-hf
AUDIO ?= $(SHARED)/fixtures/speech/s01.wav

.PHONY: all build models venv test run bench gpu-bundle fmt clippy

all: build

build:
	$(CARGO) build --release

# Python tools for the test set-up and the benchmark peer (faster-whisper, moto, converter).
venv: $(VENV)/.ready
$(VENV)/.ready:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "numpy<3" "safetensors==0.8.0" "moto[server]==5.2.5" "faster-whisper==1.2.1" "jiwer==4.0.0"
	touch $@

# The default model (CTranslate2 layout) and the same weights in Hugging Face layout.
models: $(MODEL)/model.bin $(MODEL_HF)/model.safetensors
$(MODEL)/model.bin:
	PYTHON=$(PYTHON) scripts/fetch-model.sh $(MODEL)
$(MODEL_HF)/model.safetensors: $(MODEL)/model.bin | venv
	$(VENV)/bin/python $(SHARED)/fixtures/ct2_to_hf.py $(MODEL) $(MODEL_HF)

# The S3 tests start moto from the virtualenv; the cache tests also pull the real model.
test: models venv
	TINGXIE_MOTO_SERVER=$(abspath $(VENV))/bin/moto_server TINGXIE_TEST_MODEL_DIR=$(abspath $(MODEL)) \
	  $(CARGO) test --release --workspace

run: $(MODEL)/model.bin
	$(CARGO) run --release -- transcribe --model $(MODEL) --format verbose_json $(AUDIO)

# tingxie and faster-whisper 1.2.1 side by side on the same files and settings (BENCHMARKS.md).
bench: models venv
	$(CARGO) build --release --bins
	$(CARGO) run --release --bin tingxie-bench -- --model $(MODEL) --fixtures $(SHARED)/fixtures versus --threads $${THREADS:-2} --python $(VENV)/bin/python --reps $${REPS:-1}

# Binaries, model and audio packed for the GPU machine (function/gpu-check.sh).
gpu-bundle: models
	function/gpu-check.sh bundle

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
