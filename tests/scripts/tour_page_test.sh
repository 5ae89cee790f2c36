#!/usr/bin/env bash
# scripts/tour-page.py on a fixture: the page names every RESULT row (with its escaped text) and shows every
# picture, each beside its example's rows; it links the CSVs and fetches nothing; and the check fails when a
# row or a picture is missing, and the writer fails on a malformed row.
#   tour_page_test.sh PATH/TO/tour-page.py
set -uo pipefail
page_py=$1 here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cp "$here/tour_results.txt" "$work/results.txt"
for f in 01_convolution.png 07_gradient_flow.png 07_lstm_adding.png 14_word2vec_pca.png 99_stray.png; do
  printf '\x89PNG fixture' >"$work/$f"
done
for f in 01_convolution.csv 07_lstm_adding_curves.csv 14_word2vec_loss.csv 07_lstm_adding.log; do echo "x" >"$work/$f"; done

$py "$page_py" write "$work" || fail "write on the fixture"
$py "$page_py" check "$work" || fail "check on the page just written"
page="$work/index.html"
grep -q 'OpenBLAS 0.3.21, core Haswell' "$page" || fail "the BLAS core is not on the page"
grep -qE 'Written [0-9]{4}-[0-9]{2}-[0-9]{2}' "$page" || fail "the date is not on the page"
grep -q '&lt;WordNet&gt; noun glosses' "$page" || fail "a row's text is not escaped"
grep -q '5 of 6 rows PASS' "$page" || fail "the pass count is wrong"
grep -qiE '(src|href)="(https?:)?//' "$page" && fail "the page fetches or links something outside the folder"
# Each example's pictures and files sit in the row of that example (07's two rows share one cell).
row07=$(grep '<td>07_lstm_adding (gradient flow)</td>' "$page")
for f in 07_gradient_flow.png 07_lstm_adding.png 07_lstm_adding_curves.csv 07_lstm_adding.log; do
  grep -q "\"$f\"" <<<"$row07" || fail "$f is not beside example 07's rows"
done
grep -q 'rowspan="2"' <<<"$row07" || fail "example 07's pictures do not span its two rows"
grep '<td>01_convolution</td>' "$page" | grep -q '"07_' && fail "07's pictures are beside 01's row"
grep '<td>14_word2vec</td>' "$page" | grep -q 'href="14_word2vec_loss.csv"' || fail "14's CSV is not linked beside its row"
grep -q 'Other pictures' "$page" && grep -q 'src="99_stray.png"' "$page" || fail "a picture of no example is not shown"

# The check must fail when the page misses a picture, a row, or a picture written after the page.
cp "$page" "$work/good.html"
sed -i 's|<img src="07_gradient_flow.png"[^>]*>||' "$page"
out=$($py "$page_py" check "$work" 2>&1) && fail "check passed a page without 07_gradient_flow.png"
grep -q 'picture 07_gradient_flow.png' <<<"$out" || fail "check did not name the missing picture: $out"
cp "$work/good.html" "$page"
sed -i '/<td>02_binary_addition<\/td>/d' "$page"
out=$($py "$page_py" check "$work" 2>&1) && fail "check passed a page without the 02 row"
grep -q 'row 02_binary_addition' <<<"$out" || fail "check did not name the missing row: $out"
cp "$work/good.html" "$page"
printf 'x' >"$work/08_gru_adding.png"
$py "$page_py" check "$work" >/dev/null 2>&1 && fail "check passed a page without a picture written after it"
rm "$work/08_gru_adding.png"
$py "$page_py" check "$work" >/dev/null || fail "check failed on the restored page"

# A malformed row is an error naming the line, not a silent page.
echo 'RESULT | 03_rnn | only three | cells' >>"$work/results.txt"
out=$($py "$page_py" write "$work" 2>&1) && fail "write accepted a row of 3 cells"
grep -q 'results.txt:8: 3 cells, expected 7' <<<"$out" || fail "write did not name the bad line: $out"
out=$($py "$page_py" write "$work/nowhere" 2>&1) && fail "write accepted a missing folder"

((fails == 0)) && echo "tour page: all checks passed"
exit $((fails > 0))
