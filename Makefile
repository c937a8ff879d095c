# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv, install
# the Python packages and fetch the pinned JVM jars with Maven first (Java 17 and Maven
# must be on the machine, and for `make test` Debian's chromium, which renders the report;
# .ci/run installs all three when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JARS   := jvm/target/.fetched
MVN    ?= mvn -q -B

.PHONY: setup demo run test unit lint typecheck bench broker-up broker-down registry-up \
        registry-down contract-check lineage-ui \
        lineage-ui-down cluster-demo cluster-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(JARS): jvm/spark/pom.xml jvm/broker/pom.xml jvm/registry/pom.xml
	$(MVN) -f jvm/spark/pom.xml dependency:copy-dependencies
	$(MVN) -f jvm/broker/pom.xml dependency:copy-dependencies
	$(MVN) -f jvm/registry/pom.xml dependency:unpack
	touch $(JARS)

setup: $(STAMP) $(JARS) ## create .venv, install the project with its dev tools, fetch the jars

demo: $(STAMP) $(JARS) ## broker up, produce events with faults, run the pipelines until idle
	$(BIN)/lakehouse demo

run: $(STAMP) $(JARS) ## run the pipelines continuously (Ctrl-C stops cleanly)
	$(BIN)/lakehouse run

test: $(STAMP) $(JARS) ## lint, type-check, then every test (unit and end to end)
	$(BIN)/ruff check .
	$(BIN)/mypy lakehouse bronze silver gold pipelines
	$(BIN)/pytest

unit: $(STAMP) ## the fast tests only (no broker, no Spark)
	$(BIN)/pytest -m "not integration"

bench: $(STAMP) $(JARS) ## the benchmark, full mode (`lakehouse bench --quick` for about 6 minutes)
	$(BIN)/lakehouse bench --output bench.json

broker-up: $(STAMP) $(JARS)
	$(BIN)/lakehouse broker up

broker-down: $(STAMP)
	$(BIN)/lakehouse broker down

registry-up: $(STAMP) $(JARS) ## the embedded schema registry (Apicurio, Confluent-compatible API)
	$(BIN)/lakehouse registry up

registry-down: $(STAMP)
	$(BIN)/lakehouse registry down

contract-check: $(STAMP) ## contracts in the working tree against the last commit's
	$(BIN)/lakehouse contract check --against HEAD

lineage-ui: $(STAMP) ## a local Marquez to browse the lineage (needs MARQUEZ_HOME)
	$(BIN)/lakehouse marquez up

lineage-ui-down: $(STAMP) ## stop the local Marquez and its PostgreSQL
	$(BIN)/lakehouse marquez down

# The same jobs on a Spark cluster: a master and two workers started on this machine from
# the pyspark installation, the three layer jobs spark-submitted to it one after another
# (--until-idle, the fetched jars in --jars, the project's code in --py-files), the tables
# printed, the cluster stopped (also when a job fails). The broker stays up, as after `demo`.
CLUSTER_DEMO_COUNT ?= 3000

cluster-demo: $(STAMP) $(JARS) ## produce events with faults, run the layer jobs on a local Spark standalone cluster
	$(BIN)/lakehouse broker up
	seed=$$(date +%s); \
	  $(BIN)/lakehouse produce orders --count $(CLUSTER_DEMO_COUNT) --seed $$seed --faults && \
	  $(BIN)/lakehouse produce clickstream --count $(CLUSTER_DEMO_COUNT) --seed $$seed --faults
	$(BIN)/lakehouse cluster up
	$(BIN)/lakehouse cluster submit bronze silver gold; status=$$?; \
	  $(BIN)/lakehouse cluster down; exit $$status

cluster-down: $(STAMP) ## stop the local Spark standalone cluster
	$(BIN)/lakehouse cluster down

clean: ## stop the broker, the registry and the local cluster, delete the local warehouse
	-$(BIN)/lakehouse cluster down
	-$(BIN)/lakehouse registry down
	-$(BIN)/lakehouse broker down
	rm -rf warehouse
