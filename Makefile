# Every target creates .venv when missing and installs what it needs.
# torch is pinned to the local CPU build first so that no CUDA build is ever pulled.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
TORCH   ?= torch==2.13.0
WORKERS ?= 2

.PHONY: demo test docs bench claims lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,docs,tracking,ray,tensorboard,bench,lm,hdf5,minari,maze,vision,brax]"
	touch $@

# verl 0.9.1 pins transformers<5.11 (and ray, numpy, ...): installed without its pins, with only the packages
# its core_algos imports, so it cannot downgrade our stack (policylab.integrations.verl uses its registries)
VERL    ?= verl==0.9.1 tensordict==0.10.0 omegaconf==2.4.0 antlr4-python3-runtime==4.9.3 orjson codetiming \
           pyvers<0.2 cloudpickle importlib_metadata torchdata==0.11.0
$(VENV)/.verl: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(foreach p,$(VERL),"$(p)")
	touch $@

install: $(VENV)/.installed $(VENV)/.verl

demo: install
	$(VENV)/bin/policylab run quickstart --workers $(WORKERS)

test: install
	$(VENV)/bin/policylab ledger --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q
	$(PY) -m pytest -q -n $(WORKERS) --dist loadgroup tests

# d3rlpy 2.8.1 pins gymnasium==1.0.0; installed without its pins so it cannot downgrade ours.
D3RLPY_DEPS := gym==0.26.2 structlog colorama dataclasses-json scikit-learn

$(VENV)/.d3rlpy: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps "d3rlpy==2.8.1"
	$(PY) -m pip install -q $(D3RLPY_DEPS) "$(TORCH)"
	touch $@

bench: install $(VENV)/.d3rlpy
	$(PY) benchmarks/online_throughput.py
	$(PY) benchmarks/lm_throughput.py
	$(PY) benchmarks/offline_throughput.py

# the site (getting started, guides, the claim ledger, the API reference from docstrings) into site/
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

claims: install
	$(VENV)/bin/policylab run --all-claims --budget full --workers $(WORKERS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
