#!/usr/bin/env bash
# Run every test: the unit tests (tests/) and every book chapter executed by nbmake, one test per
# chapter, in one pytest command, after setting up .venv if needed. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -k charts` or `bash scripts/test.sh -k intro` (one chapter).
#
# nbmake runs .ipynb files, so jupytext first writes the MyST chapters into a temporary folder
# (tests/nbmake_chapters.py, which is also the pytest plugin that fails a chapter writing to
# stderr). Chapters run their CI-cheap variant (LONGMUL_FAST=1) unless LONGMUL_FAST is set, in their
# own folder, with the same 1200 s limit per cell as before. The browser check of the site
# (tests/test_book_site.py) runs when a built site and Chromium are present.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_venv.sh || exit 1

chapters=$(mktemp -d "${TMPDIR:-/tmp}/longmul-chapters.XXXXXX") || exit 1
trap 'rm -rf "$chapters"' EXIT
.venv/bin/python tests/nbmake_chapters.py "$chapters" >/dev/null || exit 1

PYTHONPATH="tests${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m pytest -n 2 \
  -p nbmake_chapters --nbmake --nbmake-timeout 1200 --overwrite tests "$chapters" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
