# Two entry points for a fresh machine: `make demo` and `make test` (see README). Neither needs root:
# everything goes into .venv. The report test uses a browser already on PATH (.ci/run installs one on CI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels on CPU machines
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	# timm drags in a torchvision that cannot load against a CPU-only local torch build; a broken
	# torchvision breaks `transformers` imports, so drop it where it does not import.
	$(BIN)/python -c "import torchvision" 2>/dev/null || $(BIN)/pip uninstall -y -q torchvision
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/meddinov3 demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow --durations=0

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_backbone.py
