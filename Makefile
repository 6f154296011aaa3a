# Two commands do all the set-up (README): `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: install serve test bench clean

# One script, under a lock: `make serve` and `make test` may run at once on a fresh clone.
install:
	@PYTHON=$(PYTHON) VENV=$(VENV) sh scripts/install-venv.sh

serve: install
	$(BIN)/fhir-server serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/crud.py

clean:
	rm -rf $(VENV) $(VENV).lock data .pytest_cache
