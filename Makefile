# rnn-classifier: every target CI runs is here; `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= data/simulated_survey
PIPELINE_ROOT ?= runs
PIPELINE := build/training_pipeline.yaml
# Compile-time choices: the image every step runs, and a GPU for the train step.
IMAGE ?= ghcr.io/goto-survey/rnn-classifier:0.1.0
GPU ?= 0
# Train and tune pods: CPU and memory (requests = limits) and deadline; see pipelines/task_settings.py.
CPU ?= 4
MEMORY ?= 16G
TIMEOUT_HOURS ?= 12
# Kubeflow: endpoint, experiment and pipeline name for upload/submit.
KFP_ENDPOINT ?= http://localhost:8080
EXPERIMENT ?= rnn-classifier
PIPELINE_NAME ?= rnn-classifier-training
DATA_URI ?= gs://YOUR_BUCKET/survey/reference
# More run parameters for `make submit`, as NAME=VALUE words (typed as the pipeline declares).
SUBMIT_SETTINGS ?=
# The simulated survey's column 0 is time in days: train on time since the previous observation.
DEMO_SETTINGS ?= --set time_column=0
# Retraining: credentials secret (optional), bucket, schedule.
GCS_SECRET ?=
RETRAINING_PIPELINE = $(dir $(PIPELINE))retraining_pipeline.yaml
BUCKET_URI ?= gs://YOUR_BUCKET
CRON ?= 0 0 6 * * *
SCHEDULE_NAME ?= rnn-classifier-retraining
# SWEEP=1: run the Katib sweep first, with the local runner (no cluster here).
SWEEP ?= 0
SWEEP_TRIALS ?= 8
SWEEP_SETTINGS = $(if $(filter 1,$(SWEEP)),--set sweep=true --set katib_on_cluster=false \
	--set sweep_max_trials=$(SWEEP_TRIALS),)

.DEFAULT_GOAL := help
.PHONY: help venv lock demo test image-test lint bench bench-quality compile upload submit image push katib-manifest clean schedule unschedule

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The environment is rebuilt whenever a lock file or the package metadata changes.
# .venv holds the development lock: the runtime lock's pins plus the test and build tools.
$(BIN)/rnn-classifier: requirements.lock requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	touch $@

venv: $(BIN)/rnn-classifier ## create .venv from requirements-dev.lock

# Both locks from pyproject.toml, for Python 3.11 on Linux x86_64 (the image's platform).
# The versions already in a lock are kept unless UPGRADE=1 (uv prefers the output file's
# pins); the dev lock is compiled under the runtime lock, so their common pins are equal.
LOCK_OPTIONS = --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make lock' --quiet $(if $(filter 1,$(UPGRADE)),--upgrade,)
lock: ## regenerate requirements.lock (runtime, the image's) and requirements-dev.lock (.venv's) with uv (UPGRADE=1: newest versions)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check \
		"$$(grep -E '^uv==' requirements-dev.lock)"
	$(BIN)/uv pip compile pyproject.toml --extra cpu $(LOCK_OPTIONS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra cpu --extra dev --constraint requirements.lock \
		$(LOCK_OPTIONS) -o requirements-dev.lock

$(DATA_DIR)/train_labels.npy: | $(BIN)/rnn-classifier
	$(BIN)/rnn-classifier simulate --output-dir $(DATA_DIR)

demo: $(BIN)/rnn-classifier $(DATA_DIR)/train_labels.npy ## run the compiled pipeline on the simulated survey under kfp.local (SWEEP=1: sweep first)
	$(BIN)/python -m pipelines.compile --output $(PIPELINE) --image $(IMAGE)
	$(BIN)/python -m pipelines.run_local --pipeline $(PIPELINE) --data-uri $(DATA_DIR) \
		--pipeline-root $(PIPELINE_ROOT) $(DEMO_SETTINGS) $(SWEEP_SETTINGS)

test: lint ## run the linters and the tests
	$(BIN)/python -m pytest -q

# Root only: apt-get installs docker.io and debootstrap when missing, and a private
# dockerd runs under IMAGE_TEST_DIR (kept as a cache; default in tests/test_image.py).
image-test: $(BIN)/rnn-classifier ## build the image with a private dockerd and run both pipelines in it (root; ~5 min)
	RNN_CLASSIFIER_IMAGE_TEST=1 $(BIN)/python -m pytest tests/test_image.py -v -rs -p no:cacheprovider

bench: $(BIN)/rnn-classifier ## measure time-to-accuracy, predict throughput and pipeline overhead (~40 min; writes benchmarks/results.json)
	$(BIN)/python benchmarks/performance.py $(BENCH_ARGS)

bench-quality: $(BIN)/rnn-classifier ## the defaults against the original, gradient boosting and MiniRocket on real data (<2 h; writes benchmarks/real_data.json)
	$(BIN)/python -m benchmarks.real_data $(BENCH_QUALITY_ARGS)

# `make print-NAME` prints a variable (benchmarks/performance.py reads DEMO_SETTINGS).
print-%:
	@echo '$($*)'

lint: $(BIN)/rnn-classifier ## ruff on the code, hadolint on the Dockerfiles
	$(BIN)/ruff check rnn_classifier components pipelines tests benchmarks docker
	$(BIN)/hadolint docker/Dockerfile docker/Dockerfile.gpu

compile: $(BIN)/rnn-classifier ## compile build/training_pipeline.yaml and build/retraining_pipeline.yaml (IMAGE=..., GPU=1, CPU=4, MEMORY=16G, TIMEOUT_HOURS=12, GCS_SECRET=name)
	$(BIN)/python -m pipelines.compile --output $(PIPELINE) --image $(IMAGE) \
		--cpu $(CPU) --memory $(MEMORY) --timeout-hours $(TIMEOUT_HOURS) \
		$(if $(filter 1,$(GPU)),--gpu,) $(if $(GCS_SECRET),--gcs-secret $(GCS_SECRET),)

upload: compile ## upload the pipeline to $(KFP_ENDPOINT): a new version, or a new pipeline the first time
	$(BIN)/python -m pipelines.kfp_endpoint check $(KFP_ENDPOINT)
	if $(BIN)/python -m pipelines.kfp_endpoint has-pipeline $(KFP_ENDPOINT) $(PIPELINE_NAME); then \
		$(BIN)/kfp --endpoint $(KFP_ENDPOINT) pipeline create-version -n $(PIPELINE_NAME) \
			-v $(PIPELINE_NAME)-$$(date +%Y%m%d-%H%M%S) $(PIPELINE); \
	else \
		$(BIN)/kfp --endpoint $(KFP_ENDPOINT) pipeline create -p $(PIPELINE_NAME) $(PIPELINE); \
	fi

submit: compile ## start a run: kfp run create -e $(EXPERIMENT) (DATA_URI=gs://..., SUBMIT_SETTINGS="epochs=20 sweep=true")
	$(BIN)/python -m pipelines.kfp_endpoint check $(KFP_ENDPOINT)
	$(BIN)/kfp --endpoint $(KFP_ENDPOINT) run create -e $(EXPERIMENT) -f $(PIPELINE) \
		-r $(PIPELINE_NAME)-$$(date +%Y%m%d-%H%M%S) data_uri=$(DATA_URI) $(SUBMIT_SETTINGS)

image: ## build the image with docker (GPU=1: docker/Dockerfile.gpu)
	docker build -f docker/Dockerfile$(if $(filter 1,$(GPU)),.gpu,) -t $(IMAGE) .

push: image ## push the image to its registry
	docker push $(IMAGE)

schedule: compile ## create (or replace) an enabled recurring run of the retraining pipeline (CRON='0 0 6 * * *' BUCKET_URI=gs://...)
	$(BIN)/python -m pipelines.schedule create --endpoint $(KFP_ENDPOINT) \
		--experiment $(EXPERIMENT) --name $(SCHEDULE_NAME) --cron '$(CRON)' \
		--pipeline $(RETRAINING_PIPELINE) --set bucket_uri=$(BUCKET_URI)

unschedule: $(BIN)/rnn-classifier ## delete the recurring run of the retraining pipeline
	$(BIN)/python -m pipelines.schedule delete --endpoint $(KFP_ENDPOINT) \
		--experiment $(EXPERIMENT) --name $(SCHEDULE_NAME)

katib-manifest: $(BIN)/rnn-classifier ## regenerate manifests/katib/experiment.yaml and validate it strictly
	$(BIN)/rnn-classifier katib manifest --output manifests/katib/experiment.yaml
	$(BIN)/rnn-classifier katib validate manifests/katib/experiment.yaml

clean: ## remove build outputs and local runs (keeps .venv and data)
	rm -rf build runs .pytest_cache
