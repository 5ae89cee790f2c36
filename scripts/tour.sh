#!/usr/bin/env bash
# The main job: installs what is missing, builds Release, and runs the course tour: every example in
# course order with short settings (--quick), then one summary table. Pictures and curves go to out/tour/,
# and out/tour/index.html shows the table with each example's pictures beside its rows (scripts/tour-page.py).
#   scripts/tour.sh            the tour (about 5 minutes on 2 cores)
#   scripts/tour.sh --full     every example with its full settings (much longer)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=--quick
[[ "${1:-}" == "--full" ]] && mode=""
bash scripts/install-deps.sh
[ -f data/digits.csv.gz ] || bash scripts/fetch-digits.sh || echo "tour: could not fetch the digits; the CNN and VAE examples will say how"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" 2>&1 | grep -E "error|warning|Built target [0-9]" || true
export OPENBLAS_NUM_THREADS=1
# OpenBLAS's kernels for this CPU (it falls back to generic SSE3 ones on CPUs it does not know).
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  core=$(bash scripts/blas-core.sh)
  [[ -z "$core" ]] || export OPENBLAS_CORETYPE="$core"
fi
echo "tour: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset, OpenBLAS detects the core itself}"
out=out/tour
mkdir -p "$out"
summary="$out/summary.md"
results=()
start=$(date +%s)
# Extra flags per example: 06 also trains with its trees as autobatch::map, 10 also decodes one question
# per task; both report the speed-up.
declare -A extra=([06_recursive_nn]="--autobatch" [10_seq2seq_addition]="--autobatch")
for exe in build/examples/[0-9][0-9]_*; do
  [ -x "$exe" ] || continue
  name=$(basename "$exe")
  echo
  echo "=== $name"
  t0=$(date +%s)
  set +e
  "$exe" $mode ${extra[$name]:-} --out "$out" 2>&1 | tee "$out/$name.log"
  set -e
  t1=$(date +%s)
  # Every RESULT line is a row (07 adds a gradient-flow row before its main one); the time is the example's.
  mapfile -t lines < <(grep '^RESULT |' "$out/$name.log" || true)
  [ "${#lines[@]}" -gt 0 ] || lines=("RESULT | $name | (crashed or no result) | - | - | - | FAIL")
  for line in "${lines[@]}"; do results+=("$line | $((t1 - t0)) s"); done
done
blas=$(cat "$out"/[0-9][0-9]_*.log 2>/dev/null | grep -m1 '^tapegrad | ' | sed 's/^tapegrad | //' || true)
blas_line="BLAS: ${blas:-unknown} (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
{
  echo "$blas_line"
  echo
  echo "| example | task | metric | target | achieved | result | time |"
  echo "|---|---|---|---|---|---|---|"
  for r in "${results[@]}"; do echo "|${r#RESULT |} |"; done
} >"$summary"
# The same rows for the one-page view (scripts/tour-page.py): index.html, checked to name every row and picture.
{ echo "$blas_line"; printf '%s\n' "${results[@]}"; } >"$out/results.txt"
page_ok=1
/usr/bin/python3 scripts/tour-page.py write "$out" && /usr/bin/python3 scripts/tour-page.py check "$out" || page_ok=0
echo
echo "=== course tour summary ($(( $(date +%s) - start )) s; pictures and curves in $out/, all on one page: $out/index.html)"
cat "$summary"
((page_ok)) || { echo "tour: $out/index.html not written or incomplete (above)"; exit 1; }
! grep -q '| FAIL |' "$summary"
