# Two commands on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh
	touch $@

# Index the example corpus shipped in examples/corpus and search it (offline, no model weights).
demo: install
	bash examples/demo.sh

# The whole test suite (offline, tiny random models).
test: install
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf demo-index .pytest_cache
