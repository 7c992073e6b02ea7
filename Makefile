# Two commands: `make run` starts the app, `make test` runs the test suite.
# Both set up .venv first (idempotent, fast when already done).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test setup lint assets

setup:
	@VENV=$(VENV) bash scripts/setup_env.sh

run: setup
	$(PY) -m kpdesk

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: setup
	@QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .

assets: setup
	$(PY) -m kpdesk.assets fetch
