# rmqkit: `make demo` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo store-demo serve test lint typecheck layers unit interop interop-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check -q --upgrade pip 2>/dev/null || true
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The order-service example (examples/order_service): an embedded cluster, or ROCKETMQ_NAME_SERVER.
demo: $(STAMP)
	PYTHONPATH=examples $(PY) -m order_service.demo

# The storage engine's demo: writes orders, reads them back, crashes a writer, recovers.
store-demo: $(STAMP)
	$(VENV)/bin/rmqkit demo

# A NameServer (9876) and a broker (10911) in one process, data in ./rmqkit-data; Ctrl-C stops it.
serve: $(STAMP)
	$(VENV)/bin/rmqkit serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests tools examples $(wildcard benchmarks)
	$(PY) tools/check_layout.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	MYPYPATH=src:examples $(VENV)/bin/mypy --strict examples/order_service tests/examples

layers: $(STAMP)
	$(VENV)/bin/lint-imports

# Real RocketMQ clients (ali-ons, the C++ client) for tests/interop, cached in .interop/.
interop-deps:
	@PYTHON=$(PYTHON) bash tools/interop/install.sh

unit: $(STAMP) interop-deps
	$(VENV)/bin/pytest

interop: $(STAMP) interop-deps
	$(VENV)/bin/pytest -q tests/interop

test: lint typecheck layers unit

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache rmqkit-data .interop
