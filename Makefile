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

demo: build
	$(BIN)/gpufleet dev-cluster up --name $(CLUSTER) > $(VENV)/demo-env
	@echo
	@echo "== GPU nodes of the local cluster '$(CLUSTER)' =="
	@. $(VENV)/demo-env && $$(dirname $$($(BIN)/python -c 'from gpufleet.devcluster import build; print(build.binary_path("kubectl"))'))/kubectl \
	  get nodes -L nvidia.com/gpu.product -L nvidia.com/gpu.memory -L nvidia.com/gpu.count -L nvidia.com/gpu.family
	@echo
	@echo "stop it with: $(BIN)/gpufleet dev-cluster down --name $(CLUSTER)"
	@tail -n 1 $(VENV)/demo-env

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
