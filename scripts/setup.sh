#!/usr/bin/env bash
# Every set-up step a fresh Linux machine needs, idempotent. Sourced by
# scripts/main.sh and scripts/test.sh; safe to run on its own.
#  - OpenBLAS (Debian) so MLX's CPU matmuls are ~60x faster than the wheel's BLAS
#  - CMake and nasm, to build libjpeg-turbo (macOS: `brew install cmake`)
#  - the wasm32-wasip2 Rust target, to build the workload plugins
#  - Python 3 with pip, which the build uses once to fetch the MLX wheel
#  - Chromium and playwright-core (npm), for the web page test, and OpenAI's Python client in
#    tests/clients/.venv, for the API test, and mlx-vlm's server in
#    tests/clients/.venv-mlx-vlm, for the load test (tests only: SETUP_BROWSER=1)
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    say "apt-get not found: install ${missing[*]} with your package manager"
    return 0
  fi
  say "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    as_root apt-get update -q >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  } || say "could not install ${missing[*]} (continuing: see README, 'Set-up')"
}

if [ "$(uname -s)" = Linux ]; then
  apt_install libopenblas0-pthread
  # The build compiles libjpeg-turbo (JPEG decoded exactly as Pillow decodes it): CMake, and
  # nasm for its SIMD code.
  apt_install cmake nasm
  if [ "${SETUP_BROWSER:-0}" = 1 ]; then
    apt_install chromium
    command -v node >/dev/null || apt_install nodejs npm
  fi
fi

command -v cargo >/dev/null || { say "cargo not found: install Rust from https://rustup.rs"; exit 1; }
if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx wasm32-wasip2 || { say "adding the wasm32-wasip2 target"; rustup target add wasm32-wasip2; }
fi
if [ "${SETUP_BROWSER:-0}" = 1 ]; then
  command -v node >/dev/null || { say "Node.js is needed for the web page test (tests/browser)"; exit 1; }
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    say "installing playwright-core for the web page test"
    (cd tests/browser && npm ci --silent --no-audit --no-fund)
  fi
  if ! tests/clients/.venv/bin/python -c 'import openai' >/dev/null 2>&1; then
    say "installing OpenAI's Python client for the API test"
    python3 -m venv tests/clients/.venv 2>/dev/null || { apt_install python3-venv; python3 -m venv tests/clients/.venv; }
    tests/clients/.venv/bin/pip install -q --disable-pip-version-check -r tests/clients/requirements.txt
  fi
  if ! tests/clients/.venv-mlx-vlm/bin/python -c 'import mlx_vlm.server' >/dev/null 2>&1; then
    say "installing mlx-vlm's server (MLX CPU wheel) for the load test against another server"
    python3 -m venv tests/clients/.venv-mlx-vlm 2>/dev/null || { apt_install python3-venv; python3 -m venv tests/clients/.venv-mlx-vlm; }
    tests/clients/.venv-mlx-vlm/bin/pip install -q --disable-pip-version-check --no-deps -r tests/clients/mlx-vlm-requirements.txt
  fi
fi
if [ -z "${MLX_DIR:-}" ]; then
  python3 -m pip --version >/dev/null 2>&1 || { say "python3 with pip is needed once, to fetch the MLX wheel (or set MLX_DIR)"; exit 1; }
fi
