"""PGPO in your own PyTorch loop, with ``pgpo_core`` and ``pgpo_torch`` only.

One RL step, the way any GRPO-style loop is written, with PGPO's two additions marked:

1. sample G responses per prompt with the current policy (Hugging Face ``generate``);
2. score them with a reward function;
3. ``pgpo_torch.compute_pgpo_advantages``: group advantages (Eq. 2), **the blind pass and
   the token visual dependency S_t (Eq. 1)**, and **A~ = A * w~ (Eqs. 4-8)**, plus the
   rollout policy's log-probs (the ``logp_old`` of the ratio);
4. ``ppo_epochs`` passes of the clipped surrogate (``pgpo_torch.PGPOLoss``, the DAPO
   recipe of ``pgpo_core.policy_loss``) and an AdamW step.

It runs offline on a CPU: a tiny randomly initialised Qwen2.5-VL
(``pgpo_torch.build_tiny_qwen2_5_vl``) and a synthetic task (name the colour of a plain
image). The toy reward gives partial credit (the share of the colour name's letters found in
the response) so that an untrained model already gets rewards that differ within a group.
With a real checkpoint, load ``Qwen2_5_VLForConditionalGeneration`` and its
``AutoProcessor`` instead and use a verifiable reward.

Usage::

    python examples/custom_loop.py            # 30 steps
    python examples/custom_loop.py --quick    # 2 steps, a smoke run
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch
from PIL import Image

import pgpo_core
from pgpo_torch import (BlindPassConfig, PGPOLoss, build_tiny_qwen2_5_vl,
                        compute_pgpo_advantages, response_token_logprobs, visual_inputs)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
           "black": (0, 0, 0), "white": (255, 255, 255)}


def sample_prompts(rng: random.Random, n: int) -> list[tuple[Image.Image, str, str]]:
    """``n`` (image, question, answer) triples: a plain 56 x 56 image of a random colour."""
    out = []
    for _ in range(n):
        name = rng.choice(sorted(COLOURS))
        image = Image.fromarray(np.full((56, 56, 3), COLOURS[name], dtype=np.uint8))
        out.append((image, "What colour is this image? Answer in one word.", name))
    return out


def reward(text: str, answer: str) -> float:
    """Toy reward in [0, 1]: the share of the answer's letters that occur in the response."""
    letters = set(answer)
    return len(letters & set(text.lower())) / len(letters)


@torch.no_grad()
def rollout(model, processor, prompts, *, group_size: int, max_new_tokens: int,
            temperature: float) -> tuple[dict, torch.Tensor, int]:
    """G responses per prompt. Returns the batch PGPO needs (left-padded prompts followed by
    right-padded responses, with ``mm_token_type_ids`` and the pixels), its boolean
    response mask ``(B, T)`` and ``T``."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}
                for _, q, _ in prompts]
    texts = [processor.apply_chat_template([m], add_generation_prompt=True) for m in messages]
    texts = [t for t in texts for _ in range(group_size)]
    images = [image for image, _, _ in prompts for _ in range(group_size)]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True,
                       padding_side="left")
    model.eval()
    sequences = model.generate(**inputs, do_sample=True, temperature=temperature, top_p=1.0,
                               max_new_tokens=max_new_tokens,
                               pad_token_id=processor.tokenizer.pad_token_id)
    model.train()
    prompt_length = inputs["input_ids"].shape[1]
    responses = sequences[:, prompt_length:]
    # A response ends at its first end-of-sequence token (kept); later tokens are padding.
    eos = responses == processor.tokenizer.eos_token_id
    after_eos = (eos.long().cumsum(-1) - eos.long()) > 0
    response_mask = ~after_eos
    batch = dict(
        input_ids=sequences,
        attention_mask=torch.cat([inputs["attention_mask"], response_mask.long()], dim=1),
        mm_token_type_ids=torch.cat([inputs["mm_token_type_ids"],
                                     torch.zeros_like(responses)], dim=1),
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
    )
    return batch, response_mask, responses.shape[1]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train; returns the last step's metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 steps, a smoke run")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps, prompts_per_step, group_size = (2, 2, 2) if args.quick else (args.steps, 4, 4)
    max_new_tokens, ppo_epochs = (6, 1) if args.quick else (12, 2)

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model, processor = build_tiny_qwen2_5_vl(seed=args.seed, attn_implementation="sdpa")
    # The one declaration of PGPO's hyper-parameters (paper defaults: tau 0.4, beta 2.0,
    # DAPO's clip 0.2 / 0.28 and token-mean), at the sampling temperature.
    config = pgpo_core.PGPOConfig(temperature=1.0)
    blind = BlindPassConfig(mode="drop")  # = the paper's masked pass, without the vision tower
    loss_fn = PGPOLoss(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    for step in range(1, steps + 1):
        prompts = sample_prompts(rng, prompts_per_step)
        batch, response_mask, T = rollout(model, processor, prompts, group_size=group_size,
                                          max_new_tokens=max_new_tokens,
                                          temperature=config.temperature)
        texts = processor.tokenizer.batch_decode(
            [ids[m] for ids, m in zip(batch["input_ids"][:, -T:], response_mask)])
        answers = [a for _, _, a in prompts for _ in range(group_size)]
        rewards = torch.tensor([reward(t, a) for t, a in zip(texts, answers)])
        group_ids = torch.arange(prompts_per_step).repeat_interleave(group_size)

        # PGPO: blind pass -> S_t -> w~_t -> A~ = A * w~, and the rollout log-probs.
        model.eval()  # no dropout in the two passes
        out = compute_pgpo_advantages(model, batch, rewards, group_ids, response_length=T,
                                      config=config, blind=blind, response_mask=response_mask,
                                      return_logprobs=True)
        model.train()

        for _ in range(ppo_epochs):
            logp = response_token_logprobs(model, visual_inputs(batch), response_length=T,
                                           temperature=config.temperature)
            loss, metrics = loss_fn(logp, out.old_logprobs, out.token_advantages,
                                    out.response_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

        summary = {"step": step, "reward": float(rewards.mean()), "loss": float(loss.detach()),
                   "clip_frac": float(metrics["clip_frac"]),
                   "dependency_mean": out.diagnostics["dependency_mean"],
                   "weight_mean": out.diagnostics["weight_mean"],
                   "weight_max": out.diagnostics["weight_max"]}
        print(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    return summary


if __name__ == "__main__":
    main()
