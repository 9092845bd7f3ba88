# Two commands for a fresh machine: `make run` and `make test`. Each creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install messages catalogs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build from PyPI.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/vlmbot run

# The web chat's browser test drives Debian's Chromium (installed here when missing).
test: $(STAMP)
	bash tests/adapters/web/ensure_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The bot's own words (bot/locale; see README "Languages"). `make messages` extracts every _(), N_() and
# ngettext() text into bot/locale/vlmbot.pot and adds the new ones, untranslated, to each language's .po;
# translate them there, then `make catalogs` compiles the .mo files the bot loads (committed with the .po).
BABEL := $(BIN)/pybabel
LOCALES := bot/locale

messages: $(STAMP)
	$(BABEL) -q extract -F babel.cfg --no-location --sort-output --project vlmbot -o $(LOCALES)/vlmbot.pot .
	$(BABEL) -q update -i $(LOCALES)/vlmbot.pot -d $(LOCALES) -D vlmbot --ignore-obsolete

catalogs: $(STAMP)
	$(BABEL) compile -d $(LOCALES) -D vlmbot --statistics
