# bvae-tfx -- see README.md. Every target installs .venv first if needed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1

.PHONY: install test test-slow test-all demo lint format clean pipeline-jd synthetic-log serve \
	bench-train bench-example-gen bench-pipeline-jd bench-serve bench-batch bench-warm-start \
	report demo-tune

install:
	@bash scripts/install.sh

## Fast tests (unit + e2e on tiny synthetic data); what CI runs. Two pytest-xdist
## workers, one test file each at a time (module fixtures are built once), in the
## order of tests/conftest.py (longest first), then the 12 slowest tests listed;
## PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -m "(unit or e2e) and not slow and not gpu" -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=12 $(PYTEST_ARGS)

## Real-data tests (../shared/data); skip cleanly when it is absent.
test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS)

## The main job on the embedded synthetic data.
demo: install
	$(PY) -m pipeline.demo

## The demo with the Tuner before the Trainer (a small KerasTuner search on the eval split).
demo-tune: install
	$(PY) -m pipeline.demo --set tuning.enabled=true --set tuning.max_trials=4 --set training.epochs=30 --set output_root=out/demo-tune

## The pipeline on the real JD log (../shared/data, or $BVAE_SHARED_DATA as the tests
## and benchmarks read it); test table beside the paper's.
JD_LOG_SET = $(if $(BVAE_SHARED_DATA),--set data.input_base=$(BVAE_SHARED_DATA)/bvae/JD_events.csv.gz)
pipeline-jd: install
	$(PY) -m pipeline.jd $(JD_LOG_SET)

## docs/REPORT.md and docs/figures/ from the result files in docs/results (no training).
report: install
	$(PY) -m bvae_tf.report

## Write the seeded synthetic event log (SYNTH_OUT=path, default out/data/synthetic_events.csv.gz).
synthetic-log: install
	$(PY) -m components.synthetic_logs --output $(or $(SYNTH_OUT),out/data/synthetic_events.csv.gz)

## Local TF Serving-protocol server on the Pusher's output (gRPC 8500, REST 8501);
## SERVE_ARGS: more server flags (e.g. --log_file=out/logs/server.log).
serve: install
	$(PY) -m serving.server --model_base_path $(or $(SERVING_MODEL_DIR),out/serving) --model_name $(or $(MODEL_NAME),bvae) --port $(or $(GRPC_PORT),8500) --rest_api_port $(or $(REST_PORT),8501) --enable_batching $(SERVE_ARGS)

## Benchmarks (print figures; run on a quiet machine).
bench-train: install
	$(PY) benchmarks/train_speed.py $(BENCH_ARGS)

bench-example-gen: install
	$(PY) benchmarks/example_gen_jd.py $(BENCH_ARGS)

bench-pipeline-jd: install
	$(PY) benchmarks/pipeline_jd.py $(JD_LOG_SET) $(BENCH_ARGS)

## Warm start on two JD spans: epochs to the cold run's valid quality (3 pipeline runs).
bench-warm-start: install
	$(PY) benchmarks/warm_start_jd.py $(BENCH_ARGS)

bench-serve: install
	$(PY) -m benchmarks.serve_load $(BENCH_ARGS)

## Batch recommendations on the latest `make pipeline-jd` outputs (users/s).
bench-batch: install
	$(PY) benchmarks/batch_recommend.py $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf out .pytest_cache .ruff_cache
