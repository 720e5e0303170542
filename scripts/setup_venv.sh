#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the project with its dev and book extras, if needed.
# Re-installs when pyproject.toml is newer than the last install. Used by build_book.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.longmul-installed
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: need Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # torch is pinned in pyproject.toml; pip takes the CPU wheel where one is provided.
  .venv/bin/python -m pip install --quiet -e ".[dev,book]"
  touch "$stamp"
fi
