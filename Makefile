# The two commands of the README are `make demo` and `make test`; everything else here
# is what they build on.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLUSTER ?= gpufleet
export GOTOOLCHAIN := local
export PATH := $(PATH):/usr/local/go/bin

.PHONY: install build demo demo-down lint unit integration test

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

build: install
	$(BIN)/gpufleet dev-cluster build

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
