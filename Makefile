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

.PHONY: all build models venv test run bench fmt clippy

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

test: models
	$(CARGO) test --release --workspace

run: $(MODEL)/model.bin
	$(CARGO) run --release -- transcribe --model $(MODEL) --format verbose_json $(AUDIO)

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
