#!/usr/bin/env python3
"""Dumps the KV cache of a randomly initialised Llama-style transformer as raw files.

The second data source for kvz (docs/compression.md, "The data"): real activations of a real
architecture (embeddings, RMSNorm, attention with RoPE, SwiGLU MLP, residual stream), but with
random weights, since no pretrained weights can be downloaded where kvtier runs. The model is
built from a config (no download), run once over random token ids with use_cache=True, and the
past_key_values are written in kvtier's block layout, the same as the KV-like generator's
(compression/testing/kv_like_data.h):

    block b := for each layer: K[tokens][kv_heads][head_dim], then V[tokens][kv_heads][head_dim]
    file    := block 0, block 1, ...   (blocks of --block-tokens consecutive tokens)

One file per dtype: <out>/<name>_bf16.bin and _fp16.bin come from forward passes run in that
dtype; _fp8e4m3.bin is the bf16 cache cast with a per-tensor scale to e4m3's range (448), as fp8
KV caches do. A JSON file beside them records the config and the shapes.

    python3 bench/codec/dump_random_model_kv.py --out /tmp/kv [--tokens 1024] [--layers 16]

Needs PyTorch and transformers (present on the GPU machine); runs on CUDA when available.
"""

import argparse
import json
import os

import torch


def cache_tensors(cache):
    """(K, V) per layer, each [batch, kv_heads, tokens, head_dim], across transformers versions."""
    if hasattr(cache, "layers"):  # transformers >= 4.56: DynamicCache.layers[i].keys/.values
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]  # legacy tuple of tuples


def build_model(args, dtype, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads,
        max_position_embeddings=max(4096, args.tokens),
        rope_theta=args.rope_theta,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    # transformers 5 keeps RoPE settings in rope_parameters; make sure the theta asked for is used.
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict):
        rope["rope_theta"] = args.rope_theta
    torch.manual_seed(args.seed)  # same weights for every dtype
    with torch.device(device):  # initialising on the GPU takes seconds, on the CPU minutes
        model = LlamaForCausalLM(config)
    model = model.to(dtype=dtype)
    model.eval()
    return config, model


def kv_blocks(kv, block_tokens):
    """Bytes of the cache in kvtier's block layout (see the module docstring)."""
    tokens = kv[0][0].shape[2]
    parts = []
    for start in range(0, tokens, block_tokens):
        for k, v in kv:
            for t in (k, v):
                # [1, kv_heads, tokens, dim] -> [tokens, kv_heads, dim] for this block
                parts.append(t[0, :, start : start + block_tokens, :].transpose(0, 1).contiguous())
    return parts


def to_fp8(parts):
    """Per-tensor scale to e4m3's largest finite value, then a saturating cast."""
    out = []
    for p in parts:
        amax = p.float().abs().max().clamp(min=1e-12)
        scaled = (p.float() * (448.0 / amax)).clamp(-448.0, 448.0)
        out.append(scaled.to(torch.float8_e4m3fn))
    return out


def write(path, parts):
    with open(path, "wb") as f:
        for p in parts:
            f.write(p.view(torch.uint8).cpu().numpy().tobytes())
    return os.path.getsize(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="llama_random")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--block-tokens", type=int, default=256)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--rope-theta", type=float, default=500000.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, args.vocab, (1, args.tokens), generator=gen).to(device)
    meta = {"files": {}}
    bf16_parts = None
    for dtype, suffix in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        config, model = build_model(args, dtype, device)
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
        kv = cache_tensors(out.past_key_values)
        parts = kv_blocks(kv, args.block_tokens)
        if dtype == torch.bfloat16:
            bf16_parts = parts
            k0 = kv[0][0].float()
            meta["layer0_key_absmax"] = float(k0.abs().max())
            meta["layer0_key_std"] = float(k0.std())
            klast = kv[-1][0].float()
            meta["last_layer_key_absmax"] = float(klast.abs().max())
            meta["last_layer_key_std"] = float(klast.std())
        path = os.path.join(args.out, f"{args.name}_{suffix}.bin")
        meta["files"][os.path.basename(path)] = write(path, parts)
        meta["config"] = config.to_dict()
        del model, out, kv
        if device == "cuda":
            torch.cuda.empty_cache()
    path = os.path.join(args.out, f"{args.name}_fp8e4m3.bin")
    meta["files"][os.path.basename(path)] = write(path, to_fp8(bf16_parts))
    meta["layout"] = "[block][layer][K,V][token][kv_head][head_dim]"
    meta["block_tokens"] = args.block_tokens
    meta["tokens"] = args.tokens
    meta["torch"] = torch.__version__
    try:
        import transformers

        meta["transformers"] = transformers.__version__
    except ImportError:
        pass
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    print(json.dumps({k: meta[k] for k in meta if k != "config"}, indent=1, default=str))


if __name__ == "__main__":
    main()
