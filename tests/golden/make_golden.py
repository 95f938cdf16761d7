#!/usr/bin/env python3
"""Golden data from Hugging Face transformers for the engine's parity tests.

Builds a tiny random Qwen3-VL on the CPU (no Hub access), runs it on fixed
inputs and saves, per case: input ids, 3-D position ids, pixel values, vision
and DeepStack features, hidden states, prefill logits, and 20 greedy tokens
with the logits of each step. Also a second model with tied embeddings (the
2B/4B layout). What it builds and why: docs/qwen3-vl.md §8.

Pinned (python 3.11): torch==2.9.1 torchvision==0.24.1 transformers==4.57.1
    python3 -m venv .venv-golden
    .venv-golden/bin/pip install torch==2.9.1 torchvision==0.24.1 transformers==4.57.1 pillow safetensors numpy
    .venv-golden/bin/python tests/golden/make_golden.py tests/golden/data

Pixel values are stored as the uint8 levels they come from (v = (u8 - 127.5) / 127.5),
checked exact here, so the committed files stay small.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (Qwen2TokenizerFast, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                          Qwen3VLProcessor)
from transformers.models.qwen2_vl.image_processing_qwen2_vl_fast import Qwen2VLImageProcessorFast
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/data"
NEW_TOKENS = 20
os.makedirs(OUT, exist_ok=True)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

# Byte-level tokenizer: ids 0..255 are bytes, 256.. the Qwen special tokens.
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
tk = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
tk.decoder = decoders.ByteLevel()
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
tk.add_special_tokens(SPECIALS)
ids = {s: tk.token_to_id(s) for s in SPECIALS}
tokenizer = Qwen2TokenizerFast(tokenizer_object=tk, bos_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token=None)

image_processor = Qwen2VLImageProcessorFast(
    size={"shortest_edge": 65536, "longest_edge": 16777216}, patch_size=16, temporal_patch_size=2,
    merge_size=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
video_processor = Qwen3VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2)
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                             video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def make_model(tie):
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, hidden_act="silu",
            max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=5000000.0,
            rope_scaling={"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True},
            tie_word_embeddings=tie, attention_bias=False, initializer_range=0.05),
        vision_config=dict(
            depth=5, hidden_size=64, intermediate_size=128, num_heads=4, in_channels=3, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=256,
            deepstack_visual_indexes=[1, 2, 3], hidden_act="gelu_pytorch_tanh", initializer_range=0.05),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie)
    torch.manual_seed(1234 + int(tie))
    model = Qwen3VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Norms away from 1 and biases away from 0, so a forgotten weight shows.
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
    # No EOS in the generation config: greedy runs exactly NEW_TOKENS steps.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def synth(w, h, seed):
    """Deterministic test picture: gradients plus noise, uint8 RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255.0 / w, yy * 255.0 / h, (xx + yy) * 127.0 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8))


CASES = {
    "single_image": ([synth(200, 300, 0)],
                     [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this."}]}]),
    "two_images": ([synth(640, 360, 1), synth(96, 96, 2)],
                   [{"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"},
                                                 {"type": "text", "text": " and "}, {"type": "image"},
                                                 {"type": "text", "text": "."}]}]),
    "text_only": (None, [{"role": "user", "content": "Hello there!"}]),
}


def run_case(model, images, messages):
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=images, return_tensors="pt")
    grid = inputs.get("image_grid_thw")
    t = {"input_ids": inputs["input_ids"].to(torch.int32)}
    with torch.no_grad():
        pos, deltas = model.model.get_rope_index(inputs["input_ids"], grid, None, inputs["attention_mask"])
        out = model(**inputs, output_hidden_states=True, use_cache=False)
        gen = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
        if images is not None:
            pv = inputs["pixel_values"]
            levels = torch.round(pv * 127.5 + 127.5)
            assert torch.all((levels >= 0) & (levels <= 255))
            assert torch.max(torch.abs((levels - 127.5) / 127.5 - pv)) < 1e-6, "pixel values are not u8 levels"
            merged, deep = model.model.visual(pv, grid_thw=grid)
            t.update(pixel_levels=levels.to(torch.uint8), image_grid_thw=grid.to(torch.int32),
                     vision_merged=merged)
            t.update({f"vision_deepstack_{i}": d for i, d in enumerate(deep)})
    t.update(position_ids=pos.to(torch.int32), rope_deltas=deltas.to(torch.int32), logits=out.logits[0],
             generated_ids=gen.sequences[0, inputs["input_ids"].shape[1]:].to(torch.int32),
             decode_step_logits=torch.stack(gen.scores, 1)[0])
    t.update({f"hidden_state_{i}": h[0] for i, h in enumerate(out.hidden_states)})
    info = {
        "prompt": prompt, "image_sizes_wh": [list(im.size) for im in images] if images else [],
        "image_grid_thw": grid.tolist() if grid is not None else [],
        "seq_len": int(inputs["input_ids"].shape[1]), "rope_deltas": deltas.tolist(),
        "generated_new_tokens": t["generated_ids"].tolist()}
    return t, info


manifest = {"versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
            "special_token_ids": ids, "new_tokens": NEW_TOKENS, "cases": {}}
for tie, folder, cases in [(False, "model", CASES), (True, "model_tied", {"single_image": CASES["single_image"]})]:
    model = make_model(tie)
    model.save_pretrained(f"{OUT}/{folder}")
    processor.save_pretrained(f"{OUT}/{folder}")
    # Images for the Rust side: the exact pixels the processor saw, as PNG.
    for case, (images, messages) in cases.items():
        tensors, info = run_case(model, images, messages)
        name = case if not tie else f"tied_{case}"
        save_file({k: v.contiguous() for k, v in tensors.items()}, f"{OUT}/{name}.safetensors")
        for i, im in enumerate(images or []):
            im.save(f"{OUT}/{case}_{i}.png")
        info["model"] = folder
        manifest["cases"][name] = info

# Preprocessing edge cases: the processor's grid and pixel levels for inputs whose
# sides are not multiples of 32, below the minimum pixel budget, very wide or tall,
# grayscale, RGBA (alpha dropped, not composited) and paletted.
def edge_images():
    rng = np.random.default_rng(7)
    rgb = lambda w, h: synth(w, h, int(rng.integers(1 << 30)))
    gray = Image.fromarray(rng.integers(0, 256, (150, 200), dtype=np.uint8), "L")
    rgba_arr = np.array(rgb(180, 120).convert("RGBA"))
    rgba_arr[..., 3] = rng.integers(0, 256, (120, 180), dtype=np.uint8)
    pal = rgb(160, 160).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return {
        "odd_333x217": rgb(333, 217),
        "small_40x30": rgb(40, 30),
        "wide_1000x40": rgb(1000, 40),
        "tall_36x700": rgb(36, 700),
        "gray_200x150": gray,
        "rgba_180x120": Image.fromarray(rgba_arr, "RGBA"),
        "palette_160x160": pal,
    }

edge = {}
for name, im in edge_images().items():
    im.save(f"{OUT}/edge_{name}.png")
    inputs = image_processor(images=[im], return_tensors="pt")
    pv, grid = inputs["pixel_values"], inputs["image_grid_thw"]
    levels = torch.round(pv * 127.5 + 127.5)
    assert torch.max(torch.abs((levels - 127.5) / 127.5 - pv)) < 1e-6
    edge[f"{name}.levels"] = levels.to(torch.uint8).contiguous()
    edge[f"{name}.grid"] = grid.to(torch.int32).contiguous()
    manifest.setdefault("edge_images", {})[name] = {"mode": im.mode, "size_wh": list(im.size), "grid": grid.tolist()}
save_file(edge, f"{OUT}/edge_images.safetensors")
# Pillow's own bicubic (the slow processor's resampler), for the engine's Pillow flavour.
Image.open(f"{OUT}/edge_odd_333x217.png").resize((320, 224), Image.BICUBIC).save(f"{OUT}/pillow_odd_333x217_to_320x224.png")

with open(f"{OUT}/manifest.json", "w") as f:
    json.dump(manifest, f, indent=1)
print("wrote", OUT)
