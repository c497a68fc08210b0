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
	@$(MAKE) --no-print-directory demo-operator CLUSTER=$(CLUSTER)
	@echo
	@echo "stop everything with: make demo-down"
	@tail -n 1 $(VENV)/demo-env

demo-down: install demo-operator-stop
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

# The operator on the demo cluster: CRDs, `gpufleet operator` in the background (log and
# pid in $(VENV)/), the mixed-generation example pool, then where each variant's pods
# landed and the pool's status. `make demo` may call it after the cluster is up.
OPERATOR_EXAMPLE ?= examples/modelpool-llama-3.1-70b.yaml
DEMO_KUBECTL = $$(dirname $$($(BIN)/python -c 'from gpufleet.devcluster import build; print(build.binary_path("kubectl"))'))/kubectl --kubeconfig=$$($(BIN)/python -c 'from gpufleet.devcluster import cluster; print(cluster.layout_for("$(CLUSTER)").admin_kubeconfig)')

.PHONY: demo-operator demo-operator-stop
demo-operator: install
	@$(DEMO_KUBECTL) apply --server-side -f crds/ >/dev/null
	@$(DEMO_KUBECTL) wait --for=condition=Established --timeout=60s crd/modelpools.gpufleet.io >/dev/null
	@if [ -f $(VENV)/operator.pid ] && kill -0 $$(cat $(VENV)/operator.pid) 2>/dev/null; then \
	  echo "operator already running (pid $$(cat $(VENV)/operator.pid))"; \
	else \
	  KUBECONFIG=$$($(BIN)/python -c 'from gpufleet.devcluster import cluster; print(cluster.layout_for("$(CLUSTER)").admin_kubeconfig)') \
	  nohup $(BIN)/gpufleet operator --resync-seconds 10 --liveness http://127.0.0.1:8081/healthz \
	    > $(VENV)/operator.log 2>&1 & echo $$! > $(VENV)/operator.pid; \
	  echo "operator started (pid $$(cat $(VENV)/operator.pid), log $(VENV)/operator.log)"; \
	fi
	@$(DEMO_KUBECTL) create secret generic hf-token --from-literal=token=demo --dry-run=client -o yaml | $(DEMO_KUBECTL) apply -f - >/dev/null
	@$(DEMO_KUBECTL) apply -f $(OPERATOR_EXAMPLE)
	@$(DEMO_KUBECTL) wait --for=condition=Ready --timeout=120s -f $(OPERATOR_EXAMPLE)
	@echo
	@echo "== where each variant's pods landed =="
	@$(DEMO_KUBECTL) get pods -l app.kubernetes.io/managed-by=gpufleet -o wide \
	  -L gpufleet.io/variant -L gpufleet.io/gpu -L gpufleet.io/tensor-parallel-size
	@$(DEMO_KUBECTL) get nodes -L nvidia.com/gpu.product | awk 'NR==1 || /kwok-(h200|h100|a100-80gb)/'
	@echo
	@echo "== pool status =="
	@$(DEMO_KUBECTL) get -f $(OPERATOR_EXAMPLE)
	@$(DEMO_KUBECTL) get -f $(OPERATOR_EXAMPLE) -o jsonpath='{range .status.variants[*]}{.name}{"\t"}{.gpu}{"\tTP "}{.tensorParallelSize}{"\tKV tokens "}{.kvCacheTokens}{"\tready "}{.readyReplicas}/{.desiredReplicas}{"\t"}{.reason}{"\n"}{end}'
	@echo "stop the operator with: make demo-operator-stop"

demo-operator-stop:
	@if [ -f $(VENV)/operator.pid ]; then kill $$(cat $(VENV)/operator.pid) 2>/dev/null || true; rm -f $(VENV)/operator.pid; fi
