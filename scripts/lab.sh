#!/usr/bin/env bash
# Open the book's chapters in JupyterLab, where double-clicking a chapter (a MyST-markdown file in
# book/) opens it as a notebook rather than as text. Sets up .venv if needed; extra arguments go to
# `jupyter lab` (e.g. --port 8890 --no-browser).
#
# The repository's jupyter/labconfig/default_setting_overrides.json makes Jupytext's notebook view the
# default viewer for markdown files. It is added to the Jupyter configuration path for this server
# only (JUPYTER_CONFIG_PATH), so your own ~/.jupyter settings stay as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export JUPYTER_CONFIG_PATH="$PWD/jupyter${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"
exec .venv/bin/jupyter lab --notebook-dir "$PWD" "$@" book/intro.md
