"""Benchmark of the PyTorch adapter, as ratios measured side by side in one run.

Not a test: it prints markdown tables and asserts nothing about speed.

1. Blind pass (b) ``drop_visual_tokens`` versus (a) ``mask_visual_attention`` on the tiny
   Qwen2.5-VL with a larger image (448 x 448 -> 256 visual tokens per prompt): forward
   time (best of ``--repeats``), sequence length. (a) is timed as the paper runs it (the
   vision tower included) and without the vision tower.
2. Exact dependency at Qwen2.5-VL's vocabulary, V = 152,064, from hidden states
   (H = ``--hidden``, default 256, T = ``--tokens``, random LM head, float32):
   - naive: both (T, V) logits materialised, then ``pgpo_core.token_visual_dependency``
     unchunked;
   - logits + chunked core: both logits materialised, the core chunked;
   - hidden-state chunked (``pgpo_torch.dependency_from_hidden_states``): no (T, V) logits.
   Time: best of ``--repeats`` in this process. Extra peak memory: each variant runs once
   in a fresh child process that builds the inputs, resets the kernel's resident-set
   high-water mark (``/proc/self/clear_refs`` = 5) and reports ``VmHWM - VmRSS`` before
   the call (Linux; pages the call actually touched).
3. One PGPO step versus one plain GRPO step on the tiny model (batch of 8 = 4 prompts x 2
   samples, 224 x 224 images, 64-token responses): GRPO = visual forward with grad +
   clipped loss + backward + AdamW step; PGPO adds ``compute_pgpo_advantages`` (visual +
   blind no-grad passes, dependency, reshaping). Generation (greedy, same lengths) is
   timed alongside so the ratio including it can be read too.

With ``--device cuda`` every section runs on the GPU: times are taken after
``torch.cuda.synchronize()``, the extra peak memory of section 2 is
``torch.cuda.max_memory_allocated()`` beyond the inputs (in this process), and sections 1
and 3 run under bfloat16 autocast, as the reference trainer does on CUDA.

Usage::

    python bench/bench_torch.py                 # full run (a few GiB peak, a few minutes)
    python bench/bench_torch.py --quick         # small shapes: a smoke run of seconds
    python bench/bench_torch.py --device cuda --hidden 3584   # on a GPU, 7B's hidden size
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import torch

MIB = 2**20
FULL_VOCAB = 152_064
DEVICE = torch.device("cpu")  # set from --device in main()


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def autocast():
    """bfloat16 autocast on CUDA (the trainer's compute dtype there), nothing on the CPU."""
    if DEVICE.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict) -> dict:
    return {k: v.to(DEVICE) for k, v in batch.items()}


def best_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` wall time of each function, the functions interleaved round
    by round so that a change in machine load hits every variant alike."""
    for fn in fns.values():
        fn()  # warm-up
    sync()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


# ------------------------------------------------------------ 1. blind pass (b) vs (a)

def rollout_batch(processor, *, n_prompts: int, samples: int, image_px: int,
                  response_tokens: int, seed: int = 0):
    """Left-padded prompts (one random image each) + full-length random responses."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    questions = ["How many triangles are there?", "Find the area.", "What is x?",
                 "Which shape is red?"]
    texts, images = [], []
    for i in range(n_prompts):
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": questions[i % len(questions)]}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        image = Image.fromarray(rng.integers(0, 256, (image_px, image_px, 3), dtype=np.uint8))
        texts += [text] * samples
        images += [image] * samples
    prompt = processor(text=texts, images=images, return_tensors="pt", padding=True,
                       padding_side="left")
    g = torch.Generator().manual_seed(seed)
    n = len(texts)
    responses = torch.randint(0, 500, (n, response_tokens), generator=g)
    return dict(
        input_ids=torch.cat([prompt["input_ids"], responses], 1),
        attention_mask=torch.cat([prompt["attention_mask"], torch.ones_like(responses)], 1),
        mm_token_type_ids=torch.cat([prompt["mm_token_type_ids"],
                                     torch.zeros_like(responses)], 1),
        pixel_values=prompt["pixel_values"], image_grid_thw=prompt["image_grid_thw"],
    ), response_tokens


def bench_blind_pass(args) -> list[str]:
    from pgpo_torch import (build_tiny_model, build_tiny_processor, drop_visual_tokens,
                            mask_visual_attention, response_outputs, visual_inputs)

    px = 112 if args.quick else 448
    processor = build_tiny_processor(max_pixels=px * px)
    model = build_tiny_model(processor, seed=0).to(DEVICE)
    batch, T = rollout_batch(processor, n_prompts=2, samples=2, image_px=px,
                             response_tokens=16 if args.quick else 128)
    batch = to_device(batch)
    variants = {
        "visual pass (reference)": visual_inputs(batch),
        "(a) mask attention, vision tower run (paper)": mask_visual_attention(model, batch),
        "(a) mask attention, no vision tower": mask_visual_attention(model, batch,
                                                                     keep_pixels=False),
        "(b) drop visual tokens": drop_visual_tokens(model, batch, response_length=T),
    }
    with torch.no_grad(), autocast():
        times = best_times({name: (lambda inputs=inputs: response_outputs(
            model, inputs, response_length=T)) for name, inputs in variants.items()},
            args.repeats)
    n_visual = int((batch["mm_token_type_ids"][0] != 0).sum())
    ref = times["(a) mask attention, vision tower run (paper)"]
    rows = [f"### 1. Blind pass (b) vs (a): tiny Qwen2.5-VL (hidden 64, 2 layers), batch "
            f"{batch['input_ids'].shape[0]}, {px}x{px} image = {n_visual} visual tokens, "
            f"{T} response tokens", "",
            "| pass | sequence length | time (ms) | time / (a) paper |",
            "|---|---:|---:|---:|"]
    for name, inputs in variants.items():
        rows.append(f"| {name} | {inputs['input_ids'].shape[1]} | {times[name] * 1e3:.1f} | "
                    f"{times[name] / ref:.2f} |")
    return rows


# ------------------------------------------------------ 2. chunked KL vs naive KL

def kl_inputs(tokens: int, vocab: int, hidden: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hv = torch.randn(1, tokens, hidden, generator=g)
    hb = hv + 0.3 * torch.randn(1, tokens, hidden, generator=g)
    w = torch.randn(vocab, hidden, generator=g) / hidden**0.5 * 4
    mask = torch.ones(1, tokens, dtype=torch.bool)
    return tuple(x.to(DEVICE) for x in (hv, hb, w, mask))


def kl_variant(name: str, hv, hb, w, mask, chunk: int):
    import pgpo_core
    from pgpo_torch import dependency_from_hidden_states

    with torch.no_grad():
        if name == "naive":
            return pgpo_core.token_visual_dependency(hv @ w.T, hb @ w.T, mask)
        if name == "logits_chunked_core":
            return pgpo_core.token_visual_dependency(hv @ w.T, hb @ w.T, mask, chunk_size=chunk)
        return dependency_from_hidden_states(hv, hb, w, mask, chunk_size=chunk)


KL_VARIANTS = {
    "naive": "naive: full logits, core unchunked",
    "logits_chunked_core": "full logits, core chunked",
    "hidden_chunked": "hidden-state chunked (pgpo_torch)",
}


def kl_child(name: str, tokens: int, vocab: int, chunk: int, hidden: int) -> None:
    """Child process: build inputs, reset the RSS high-water mark, run once, report."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    hv, hb, w, mask = kl_inputs(tokens, vocab, hidden)
    kl_variant("hidden_chunked", hv[:, :2], hb[:, :2], w[:64], mask[:, :2], chunk)  # warm libs
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    kl_variant(name, hv, hb, w, mask, chunk)
    peak = _status_kib("VmHWM")
    print(json.dumps({"extra_peak_mib": (peak - before) / 1024}))


def bench_kl(args) -> list[str]:
    tokens = 128 if args.quick else args.tokens
    vocab = 8192 if args.quick else FULL_VOCAB
    chunk = args.chunk
    hidden = args.hidden
    hv, hb, w, mask = kl_inputs(tokens, vocab, hidden)
    results = {name: kl_variant(name, hv, hb, w, mask, chunk) for name in KL_VARIANTS}
    max_diff = max(float((results[n] - results["naive"]).abs().max()) for n in KL_VARIANTS)
    times = best_times({name: (lambda name=name: kl_variant(name, hv, hb, w, mask, chunk))
                        for name in KL_VARIANTS}, args.repeats)
    memory = {}
    for name in KL_VARIANTS:
        if DEVICE.type == "cuda":  # the caching allocator's own high-water mark
            sync()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            kl_variant(name, hv, hb, w, mask, chunk)
            sync()
            memory[name] = (torch.cuda.max_memory_allocated() - before) / MIB
            continue
        out = subprocess.run([sys.executable, __file__, "--kl-child", name, "--tokens",
                              str(tokens), "--vocab", str(vocab), "--chunk", str(chunk),
                              "--hidden", str(hidden)],
                             capture_output=True, text=True, check=True)
        memory[name] = json.loads(out.stdout.strip().splitlines()[-1])["extra_peak_mib"]
    one_logits = tokens * vocab * 4 / MIB
    measure = "CUDA peak allocated" if DEVICE.type == "cuda" else "peak RSS"
    rows = [f"### 2. Exact dependency, T = {tokens}, V = {vocab:,}, H = {hidden}, float32, "
            f"chunk {chunk} (one (T, V) float32 logits tensor = {one_logits:.0f} MiB; "
            f"max |difference| to naive = {max_diff:.1e})", "",
            f"| variant | time (ms) | time / naive | extra {measure} (MiB) | memory / naive |",
            "|---|---:|---:|---:|---:|"]
    for name, label in KL_VARIANTS.items():
        rows.append(f"| {label} | {times[name] * 1e3:.0f} | {times[name] / times['naive']:.2f} | "
                    f"{memory[name]:.0f} | {memory[name] / memory['naive']:.3f} |")
    return rows


# ------------------------------------------------------ 3. PGPO step vs GRPO step

def bench_step(args) -> list[str]:
    import pgpo_core
    from pgpo_core import PGPOConfig
    from pgpo_torch import (PGPOLoss, build_tiny_model, build_tiny_processor,
                            compute_pgpo_advantages, response_token_logprobs, visual_inputs)

    px = 56 if args.quick else 224
    processor = build_tiny_processor(max_pixels=px * px)
    model = build_tiny_model(processor, seed=0).to(DEVICE)
    T = 8 if args.quick else 64
    batch, T = rollout_batch(processor, n_prompts=4, samples=2, image_px=px,
                             response_tokens=T)
    batch = to_device(batch)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0], device=DEVICE)
    groups = torch.arange(4, device=DEVICE).repeat_interleave(2)
    mask = batch["attention_mask"][:, -T:].bool()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    loss_fn = PGPOLoss(PGPOConfig())

    def train_step(token_advantages):
        model.train()
        with autocast():
            logp = response_token_logprobs(model, visual_inputs(batch), response_length=T)
        loss, _ = loss_fn(logp.float(), logp.detach().float(), token_advantages, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()

    def grpo_step():
        train_step(pgpo_core.group_advantages(rewards, groups).advantages)

    def pgpo_step(blind, estimator):
        config = PGPOConfig(estimator=estimator)
        with autocast():
            out = compute_pgpo_advantages(model, batch, rewards, groups, response_length=T,
                                          config=config, blind=blind)
        train_step(out.token_advantages)

    prompt_width = batch["input_ids"].shape[1] - T
    prompt = {k: (v[:, :prompt_width] if k in ("input_ids", "attention_mask",
                                                 "mm_token_type_ids") else v)
              for k, v in batch.items()}

    def generate():
        with torch.no_grad(), autocast():
            model.generate(**prompt, max_new_tokens=T, min_new_tokens=T, do_sample=False)

    steps = {"GRPO step": grpo_step}
    for blind in ("drop", "mask"):
        for estimator in ("exact", "k3"):
            steps[f"PGPO step, blind {blind}, {estimator}"] = (
                lambda b=blind, e=estimator: pgpo_step(b, e))
    steps["generation"] = generate
    times = best_times(steps, args.repeats)
    gen = times.pop("generation")
    base = times["GRPO step"]
    rows = [f"### 3. PGPO step vs GRPO step: tiny Qwen2.5-VL, batch 8 (4 prompts x 2), "
            f"{px}x{px} images, {T} response tokens; greedy generation of the batch "
            f"{gen * 1e3:.0f} ms", "",
            "| step | time (ms) | / GRPO step | / GRPO step incl. generation |",
            "|---|---:|---:|---:|"]
    for name, t in times.items():
        rows.append(f"| {name} | {t * 1e3:.1f} | {t / base:.2f} | "
                    f"{(t + gen) / (base + gen):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=1024, help="T for the KL benchmark")
    parser.add_argument("--vocab", type=int, default=FULL_VOCAB)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256, help="H for the KL benchmark")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steadier figures on a shared machine)")
    parser.add_argument("--kl-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sections", default="1,2,3")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.kl_child:
        kl_child(args.kl_child, args.tokens, args.vocab, args.chunk, args.hidden)
        return
    torch.set_num_threads(args.threads)
    os.environ["BENCH_THREADS"] = str(args.threads)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    where = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
             else f"{torch.get_num_threads()} threads, CPU")
    print(f"torch {torch.__version__}, {where}"
          + (" (--quick: small shapes, figures not meaningful)" if args.quick else ""))
    benches = {"1": bench_blind_pass, "2": bench_kl, "3": bench_step}
    for key in args.sections.split(","):
        print()
        print("\n".join(benches[key.strip()](args)))


if __name__ == "__main__":
    main()
