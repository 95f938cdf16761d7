#!/usr/bin/env python3
"""Loads a directory written by `host model synth` with the reference tools and
prints what they generate, as JSON, for comparison with `host generate --json`.

  hf  DIR IMAGE PROMPT N: transformers (Hugging Face layout), its own processor,
                          tokenizer and chat template; N greedy tokens.
  mlx DIR IMAGE PROMPT N: mlx-vlm (mlx-community layout), its own loader,
                          processor and tokenizer; N greedy tokens.

Environments: `hf` runs in the golden environment (make_golden.py's header);
`mlx` needs mlx-vlm 0.7.10 (which wants transformers >= 5.14):
    python3 -m venv .venv-mlx && .venv-mlx/bin/pip install mlx==0.32.4 mlx-cpu==0.32.4 mlx-vlm==0.7.10
"""
import json
import sys
import time


def hf(path, image, prompt, n):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    t = time.perf_counter()
    model = Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(path)
    load_s = time.perf_counter() - t
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.open(image).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    first = out.scores[0][0]
    return {"tool": "transformers", "load_s": load_s, "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "grid": inputs["image_grid_thw"].tolist(), "token_ids": new,
            "first_top5": torch.topk(first, 5).indices.tolist()}


def mlx(path, image, prompt, n):
    import mlx.core as mx
    from mlx_vlm import load
    from mlx_vlm.generate import stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    t = time.perf_counter()
    model, processor = load(path)
    load_s = time.perf_counter() - t
    text = apply_chat_template(processor, model.config, prompt, num_images=1)
    ids, times = [], []
    t0 = time.perf_counter()
    for r in stream_generate(model, processor, text, image=[image], max_tokens=n, temperature=0.0):
        if r.finish_reason is not None:
            break  # the closing result repeats the last token
        times.append(time.perf_counter() - t0)
        ids.append(int(r.token))
    mx.synchronize()
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
    return {"tool": "mlx-vlm", "load_s": load_s, "token_ids": ids, "ttft_s": times[0] if times else None,
            "decode_tok_s": decode, "total_s": time.perf_counter() - t0}


if __name__ == "__main__":
    which, path, image, prompt, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    print(json.dumps({"hf": hf, "mlx": mlx}[which](path, image, prompt, n)))
