#!/usr/bin/env bash
# Fetches the 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits", E. Alpaydin and
# C. Kaynak, 1998; 1797 images of 8x8 pixels, values 0-16, plus the label) into data/digits.csv.gz.
# The file ships in Debian's python3-sklearn package (sklearn/datasets/data/digits.csv.gz): this script
# downloads the .deb with apt-get and unpacks that one file with dpkg-deb. No Python is needed.
#
#   bash scripts/fetch-digits.sh          # writes data/digits.csv.gz under the repository root
#   bash scripts/fetch-digits.sh DIR      # writes DIR/digits.csv.gz
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="${1:-$root/data}"
dest="$dest_dir/digits.csv.gz"

if [[ -s "$dest" ]]; then
  echo "already there: $dest"
  exit 0
fi
for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found (this script needs Debian/Ubuntu)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt-get download runs as _apt where it can: let it write here

echo "downloading python3-sklearn (.deb, about 2 MB) ..."
if ! (cd "$work" && apt-get download python3-sklearn >/dev/null 2>"$work/apt.err"); then
  # The package lists may be missing on a fresh machine (docker images ship without them).
  if [[ $(id -u) -eq 0 ]]; then
    echo "apt-get download failed; running apt-get update and trying again ..."
    apt-get update -qq
    (cd "$work" && apt-get download python3-sklearn >/dev/null)
  else
    cat "$work/apt.err" >&2
    echo "error: apt-get download python3-sklearn failed (try: sudo apt-get update, then run this again)" >&2
    exit 1
  fi
fi

deb="$(ls "$work"/python3-sklearn_*.deb | head -n 1)"
dpkg-deb -x "$deb" "$work/x"
src="$(find "$work/x" -path '*sklearn/datasets/data/digits.csv.gz' | head -n 1)"
if [[ -z "$src" ]]; then
  echo "error: digits.csv.gz not found in $(basename "$deb")" >&2
  exit 1
fi
lines="$(gzip -dc "$src" | wc -l)"
if [[ "$lines" -ne 1797 ]]; then
  echo "error: expected 1797 rows in digits.csv.gz, found $lines" >&2
  exit 1
fi
mkdir -p "$dest_dir"
cp "$src" "$dest"
echo "wrote $dest (1797 images, 64 pixels + label each, from $(basename "$deb"))"
