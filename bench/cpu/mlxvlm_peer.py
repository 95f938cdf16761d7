#!/usr/bin/env python3
"""mlx-vlm on the same model directory as our engine, on the CPU: one image, one
prompt, exactly N greedy tokens (EOS ignored), 1 warm-up and R timed requests in
one process. Prints one JSON line per timed request:
{"ttft_s", "decode_tok_s", "total_s", "tokens", "prompt_tokens"}.

  mlxvlm_peer.py DIR IMAGE PROMPT N R [--dtype float32|bfloat16|as-is]

`--dtype float32` casts the model's floating-point weights to f32 after loading,
which is what our engine computes in on the CPU (MLX's CPU backend has no fast
bf16 matmul); `as-is` (default) keeps the checkpoint's dtype, as mlx-vlm does.
Needs mlx-vlm 0.7.10 on MLX 0.32.4 (see tests/golden/check_synthetic.py).
"""
import json
import sys
import time

import mlx.core as mx
from mlx.utils import tree_map
from mlx_vlm import load
from mlx_vlm.generate import stream_generate
from mlx_vlm.prompt_utils import apply_chat_template


class NeverStop:
    """Stands in for the tokenizer's stopping criteria: a fixed workload."""

    def __call__(self, token):
        return False

    def add_eos_token_ids(self, ids):
        pass

    def reset(self, *a, **k):
        pass


def main():
    path, image, prompt, n, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    dtype = sys.argv[7] if len(sys.argv) > 7 and sys.argv[6] == "--dtype" else "as-is"
    model, processor = load(path)
    if dtype != "as-is":
        target = getattr(mx, dtype)
        # Floating-point weights only: quantized weights (uint32) and their
        # integer metadata stay as they are.
        model.update(tree_map(lambda a: a.astype(target) if mx.issubdtype(a.dtype, mx.floating) else a,
                              model.parameters()))
        mx.eval(model.parameters())
    processor.tokenizer.stopping_criteria = NeverStop()
    text = apply_chat_template(processor, model.config, prompt, num_images=1)
    for i in range(repeats + 1):
        times = []
        prompt_tokens = None
        t0 = time.perf_counter()
        for r in stream_generate(model, processor, text, image=[image], max_tokens=n, temperature=0.0):
            if r.finish_reason is not None:
                break  # the closing result repeats the last token
            times.append(time.perf_counter() - t0)
            prompt_tokens = r.prompt_tokens
        mx.synchronize()
        total = time.perf_counter() - t0
        if i == 0:
            continue  # warm-up
        decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
        print(json.dumps({"ttft_s": times[0], "decode_tok_s": decode, "total_s": total,
                          "tokens": len(times), "prompt_tokens": prompt_tokens, "dtype": dtype}), flush=True)


if __name__ == "__main__":
    main()
