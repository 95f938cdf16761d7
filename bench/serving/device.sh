#!/usr/bin/env bash
# Serving under load on one machine: our server (`host serve`, continuous
# batching) and mlx-vlm's server (its continuous batching, on the same MLX),
# one after the other on the same synthetic model, driven by the same
# closed-loop client (`load.py`): 448x448 uniform-noise images (a new one per
# request), 100 forced output tokens, greedy, streamed, at each concurrency.
# Raw results (JSON per server, logs, nvidia-smi samples) go to $OUT; the
# tables are printed last.
#
# usage: device.sh [ours|mlxvlm|all] (default all)
# env:   MODEL (a model directory; else the 8B 4-bit is synthesized under
#        ~/models), CONC (1,4,16,64), PER_CLIENT (requests per client: 3),
#        MAX_BATCH (64), PREFILL_CHUNK (our server's default), IMAGE (448x448),
#        TOKENS (100), OUT (./out),
#        VLM_GPU_HOME (where unpack.sh put MLX and the binaries)
set -uo pipefail
WHAT=${1:-all}
CONC=${CONC:-1,4,16,64}
PER_CLIENT=${PER_CLIENT:-3}
MAX_BATCH=${MAX_BATCH:-64}
IMAGE=${IMAGE:-448x448}
TOKENS=${TOKENS:-100}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
if [ -f "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh" ]; then . "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh"; fi
export VLM_BENCH_HOME=${VLM_BENCH_HOME:-$HOME/vlm-bench}
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
MODEL=${MODEL:-$HOME/models/qwen3-vl-8b-4-mlx}
if [ ! -f "$MODEL/config.json" ]; then
  stamp "synthesizing $MODEL"
  # mlx-community's layout: both servers load the same files.
  host model synth --arch qwen3-vl-8b --quant 4 --layout mlx --out "$MODEL" > "$OUT/synth.log" 2>&1 || exit 3
fi
PORT=18400

# Samples GPU memory while a server runs, for its peak.
watch_gpu() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$1" 2>/dev/null &
  echo $!
}

# Waits up to $2 seconds for $1 to answer.
wait_up() {
  for _ in $(seq "$2"); do
    curl -sf "$1" > /dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

measure() { # name model-name
  python3 "$HERE/load.py" --url "http://127.0.0.1:$PORT/v1" --model "$2" \
    --concurrency "$CONC" --requests-per-client "$PER_CLIENT" --image "$IMAGE" \
    --max-tokens "$TOKENS" --warmup 2 --label "$1" --out "$OUT/$1.json" \
    ${METRICS:+--metrics-url "$METRICS"} ${EXTRA:+--extra-body "$EXTRA"} \
    > "$OUT/$1.table" 2> "$OUT/$1.load.log"
  stamp "$1: load exit $?"
  cat "$OUT/$1.table"
}

if [ "$WHAT" = ours ] || [ "$WHAT" = all ]; then
  stamp "ours: host serve --max-batch $MAX_BATCH"
  host serve --model "$MODEL" --addr 127.0.0.1:$PORT --db "$OUT/serve.db" \
    --max-batch "$MAX_BATCH" ${PREFILL_CHUNK:+--prefill-chunk "$PREFILL_CHUNK"} --queue 256 \
    > "$OUT/ours.server.log" 2>&1 &
  server=$!
  gpu=$(watch_gpu "$OUT/ours.gpu_mib")
  if wait_up "http://127.0.0.1:$PORT/health" 300; then
    name=$(curl -s "http://127.0.0.1:$PORT/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
    METRICS="http://127.0.0.1:$PORT/metrics" measure "ours${PREFILL_CHUNK:+-chunk$PREFILL_CHUNK}" "$name"
  else
    stamp "ours: the server did not come up"; tail -5 "$OUT/ours.server.log"
  fi
  kill $server $gpu 2> /dev/null; wait $server 2> /dev/null
  echo "peak GPU memory (MiB): $(sort -n "$OUT/ours.gpu_mib" | tail -1)"
fi

if [ "$WHAT" = mlxvlm ] || [ "$WHAT" = all ]; then
  wheels=${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/server-wheels
  if [ -d "$wheels" ]; then
    bash "$HERE/../gpu/stage/peer_server_wheels.sh" install "$wheels" \
      "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/pylib" > "$OUT/mlxvlm.install.log" 2>&1
    stamp "mlx-vlm server's wheels: exit $?"
  fi
  stamp "mlx-vlm: python3 -m mlx_vlm.server --max-num-seqs $MAX_BATCH"
  python3 -m mlx_vlm.server --model "$MODEL" --host 127.0.0.1 --port $PORT \
    --max-num-seqs "$MAX_BATCH" > "$OUT/mlxvlm.server.log" 2>&1 &
  server=$!
  gpu=$(watch_gpu "$OUT/mlxvlm.gpu_mib")
  if wait_up "http://127.0.0.1:$PORT/health" 300; then
    # mlx-vlm accepts ignore_eos but does not act on it: the end tokens
    # (151645, 151643) are banned instead, so that every answer is as long.
    EXTRA='{"logit_bias": {"151645": -100, "151643": -100}}' METRICS= measure mlxvlm "$MODEL"
  else
    stamp "mlx-vlm: the server did not come up"; tail -20 "$OUT/mlxvlm.server.log"
  fi
  kill $server $gpu 2> /dev/null; wait $server 2> /dev/null
  echo "peak GPU memory (MiB): $(sort -n "$OUT/mlxvlm.gpu_mib" | tail -1)"
fi
stamp done
