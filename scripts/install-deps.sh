#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever the build, tests, examples and benches need and this
# machine lacks. Run as root (or with sudo). Packages already present are not touched.
set -euo pipefail
pkgs=(build-essential cmake libxtensor-dev libxtensor-blas-dev libxsimd-dev libopenblas-dev
      libboost-test-dev libboost-context-dev libbenchmark-dev graphviz gnuplot-nox libzip-dev pkgconf python3-numpy
      wordnet-base  # WordNet's nouns: example 14's real text and its target (/usr/share/wordnet)
      libopenmpi-dev openmpi-bin)  # Open MPI: tapegrad::dist (optional; its tests run under mpirun)
# Options, any of them, in any order:
#   --fuzz   clang and its libFuzzer/sanitizer runtimes (scripts/test.sh --fuzz)
#   --torch  LibTorch (libtorch-dev, LibTorch 1.13): the optional *_torch benches of scripts/bench.sh rnn,
#            transformer and workload. Neither the tests nor CI need it.
for opt in "$@"; do
  case "$opt" in
    --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    --torch) pkgs+=(libtorch-dev) ;;
    *) echo "usage: $0 [--fuzz] [--torch]" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: everything is installed"
fi
