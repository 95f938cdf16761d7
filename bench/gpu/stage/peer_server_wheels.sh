#!/usr/bin/env bash
# The wheels mlx-vlm's OpenAI-compatible server (`python3 -m mlx_vlm.server`)
# needs on the GPU machine beyond what its Python image brings (PyTorch,
# transformers 5.x with its dependencies, numpy, Pillow, requests, jinja2,
# tqdm, safetensors, huggingface_hub) and beyond the peers' wheels pack.sh
# carries (mlx, mlx-cuda-13, mlx-vlm 0.7.10, mlx-lm 0.32.2, installed with
# --no-deps). Pinned, for CPython 3.12 on x86-64 Linux with glibc >= 2.35.
#
# Two groups:
#   server      never part of that image: the web stack, the modules
#               mlx_vlm.server imports at start-up (mlx-audio for its audio
#               file helpers; cryptography for conversation compaction;
#               OpenTelemetry's API, which FastAPI imports)
#   fallback    what the server group imports that transformers 5.x and
#               huggingface_hub usually bring already (pydantic, anyio, h11,
#               click, ...); `install` adds one only where the machine lacks it
#               or has an older version
# Left out on purpose: what only audio, video, the realtime WebSocket route,
# structured output or form uploads load lazily (miniaudio, soundfile,
# sounddevice, scipy, opencv, llguidance, websockets, python-multipart,
# datasets, sentencepiece); the server starts and serves image chat without them.
#
# usage: peer_server_wheels.sh DEST                  download into DEST (here, with internet)
#        peer_server_wheels.sh install DEST TARGET   install into TARGET (there, no internet),
#                                                    e.g. $VLM_GPU_HOME/pylib, which env.sh puts
#                                                    on PYTHONPATH
# then:  python3 -m mlx_vlm.server --model DIR --host 127.0.0.1 --port 8080 --max-num-seqs 64
set -euo pipefail

server=(
  fastapi==0.165.0
  starlette==1.10.0
  uvicorn==0.55.0
  opentelemetry-api==1.45.3
  mlx-audio==0.6.2
  cryptography==51.0.1
  cffi==2.1.1
)
fallback=(
  pydantic==2.14.4
  pydantic-core==2.50.5
  annotated-types==0.8.0
  typing-inspection==0.4.5
  annotated-doc==0.0.7
  anyio==4.16.0
  h11==0.16.0
  click==8.5.1
  idna==3.21
  typing-extensions==4.16.0
)

usage() { awk '/^# usage:/{p=1} /^set -euo/{p=0} p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
"" | -h | --help) usage ;;
install)
  dest=${2:-}; target=${3:-}
  [ -n "$dest" ] && [ -n "$target" ] || usage
  mkdir -p "$target"
  # with PYTHONPATH as env.sh sets it, so that what TARGET already holds counts
  want=()
  for spec in "${server[@]}"; do want+=("$spec"); done
  for spec in "${fallback[@]}"; do
    name=${spec%%==*}; version=${spec##*==}
    have=$(python3 - "$name" "$version" <<'EOF'
import sys
from importlib import metadata
name, want = sys.argv[1], sys.argv[2]
try:
    have = metadata.version(name)
except metadata.PackageNotFoundError:
    print("missing"); sys.exit()
def key(v):
    out = []
    for part in v.split("."):
        digits = "".join(c for c in part if c.isdigit()) or "0"
        out.append(int(digits))
    return out
print("older" if key(have) < key(want) else "ok " + have)
EOF
)
    case "$have" in
    ok*) echo "have ${name} ${have#ok }" >&2 ;;
    *) echo "adding ${spec} (${have})" >&2; want+=("$spec") ;;
    esac
  done
  python3 -m pip install -q --no-deps --no-index --no-compile --find-links "$dest" \
    --target "$target" --upgrade "${want[@]}"
  PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" python3 -c \
    'import mlx_vlm.server.app, mlx_vlm.server.cli; print("mlx_vlm.server imports")'
  ;;
*)
  dest=$1
  mkdir -p "$dest"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$dest" "${server[@]}" "${fallback[@]}"
  ls -l "$dest"/*.whl | awk '{print $5, $9}' >&2
  du -sh "$dest" >&2
  ;;
esac
