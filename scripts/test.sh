#!/usr/bin/env bash
# Run every test: the unit tests and every book chapter executed as a notebook (tests/), after
# setting up .venv if needed. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k charts`.
#
# Chapters run their CI-cheap variant (LONGMUL_FAST=1) unless LONGMUL_FAST is set. The browser
# check of the site (tests/test_book_site.py) runs when a built site and Chromium are present.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_venv.sh || exit 1

.venv/bin/python -m pytest -n 2 tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
