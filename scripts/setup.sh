#!/usr/bin/env bash
# Installs what kvq needs to build and test on Debian (as root, or with sudo):
# compiler, clang (libFuzzer), zstd, liblzma, cmocka, the peer compressors the
# benchmarks compare against, and rsvg-convert to rasterize report plots.
set -euo pipefail
pkgs=(build-essential clang libzstd-dev liblzma-dev libcmocka-dev zstd xz-utils brotli bzip2 librsvg2-bin jq)
need=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} -eq 0 ] && { echo "setup: all packages present"; exit 0; }
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}"
