#!/usr/bin/env bash
# Installs what is missing, builds (Release) and runs every test with ctest.
#   scripts/test.sh              the tests (the README's test command; CI runs this)
#   scripts/test.sh --sanitize   the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The digits (from Debian's python3-sklearn package) let the CNN example's smoke test run too.
[ -f data/digits.csv.gz ] || bash scripts/fetch-digits.sh || echo "test: digits not fetched; the CNN smoke test is skipped"
build=build; type=Release; extra=()
if [[ "${1:-}" == "--sanitize" ]]; then
  build=build-asan; type=RelWithDebInfo; extra=(-DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_BUILD_BENCH=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=$type "${extra[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
