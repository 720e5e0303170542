#!/usr/bin/env bash
# Build the book: set up .venv if needed, execute every chapter, write the site to _build/html.
#
#   bash scripts/build_book.sh            # incremental: re-executes chapters whose code changed
#   bash scripts/build_book.sh --clean    # from an empty _build (what CI does)
#
# Warnings are errors (-W -n --keep-going). LONGMUL_FAST=1 builds the CI-cheap variant of costly cells.
# LONGMUL_REPOSITORY_URL=https://host/owner/name adds the repository and launch buttons (without it
# the site links to no repository); LONGMUL_REPOSITORY_BRANCH picks the branch (default main).
# jupyter-cache re-executes a chapter only when its code changes, so _build is wiped whenever the
# run's inputs that code does not show change: LONGMUL_FAST, LONGMUL_MODELS, the models the chapters
# load (finished, else the snapshot of a run in training: longmul.shipped.shipped_dir) and results/.
# The histories of runs still in training are left out: they grow every few minutes, and with them in
# the fingerprint every build would start clean. Chapter 5 reads them, so its training curves are as
# of the build that last executed it; --clean redraws them from the histories as they are now.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_venv.sh

if [ "${1:-}" = "--clean" ]; then
  rm -rf _build
fi
models_dir=${LONGMUL_MODELS:-models}
fingerprint=$(
  {
    echo "LONGMUL_FAST=${LONGMUL_FAST:-}"
    echo "LONGMUL_MODELS=${LONGMUL_MODELS:-}"
    echo "LONGMUL_REPOSITORY_URL=${LONGMUL_REPOSITORY_URL:-}"
    # a saved model's manifest hashes every file in it (weights, records, its history)
    cat "$models_dir"/*/manifest.json "$models_dir"/*/snapshot/manifest.json 2>/dev/null || true
    # result files change without a manifest
    find results -type f 2>/dev/null | sort | xargs -r cat 2>/dev/null | sha256sum || true
  } | sha256sum | cut -d' ' -f1
)
if [ -d _build ] && [ "$(cat _build/.longmul-inputs 2>/dev/null)" != "$fingerprint" ]; then
  echo "build: LONGMUL_FAST, LONGMUL_MODELS, the models (or their snapshots) or results/ changed since the last build: starting from a clean _build"
  rm -rf _build
fi
mkdir -p _build
echo "$fingerprint" > _build/.longmul-inputs

config=()
if [ -n "${LONGMUL_REPOSITORY_URL:-}" ]; then
  .venv/bin/python scripts/book_config.py "$LONGMUL_REPOSITORY_URL" _build/config-with-repository.yml \
    --branch "${LONGMUL_REPOSITORY_BRANCH:-main}"
  config=(--config _build/config-with-repository.yml)
fi

start=$(date +%s)
.venv/bin/jupyter-book build . "${config[@]}" --builder html -W -n --keep-going
echo "build: _build/html written in $(( $(date +%s) - start )) s"
