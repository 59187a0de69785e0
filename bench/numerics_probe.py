"""Fingerprint the default run's numerics, bit for bit, for comparing machines and settings.

    python bench/numerics_probe.py --out a.json [--warmup 20] [--rl-steps 2] [--perturb]
        [--threads N] [--eval-prompts 0] [override ...]

Runs the default configuration's first stages in this process and writes, as hashes and
``float.hex`` values: the numerical environment
(:func:`reference_impl.runlog.numerics.numerical_environment`), the rendered images of the first training and held-out examples, the processor's pixel
values, the tokenizer, the initial weights, the first warm-up batch's log-probs (saved
beside the JSON as a tensor, to measure differences), every warm-up loss, the weights after
every warm-up step (the final ones saved as tensors too), and the token ids sampled in each
rollout round of the RL steps. Two runs agree bit for bit where their hashes agree.

Settings that must act before torch is imported (``ATEN_CPU_CAPABILITY``,
``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``, ``OMP_NUM_THREADS``,
``PYTHONHASHSEED``) are set in the environment of the process that runs this script.
``--perturb`` moves one weight of the initial model by one ulp (the smallest possible
difference) to see how fast it grows. ``--eval-prompts N`` evaluates avg@4 on the first N
held-out prompts after the warm-up, as the trainer does (0: skip); ``--varied-reward``
rewards even-length responses so that RL updates from its first step; ``--deterministic``
turns on ``torch.use_deterministic_algorithms``. Findings:
``docs/evidence/determinism_2026-12-06.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tensor_sha(t) -> str:
    return _sha(t.detach().contiguous().cpu().numpy().tobytes())


def _state_sha(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rl-steps", type=int, default=2)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mkldnn", choices=["on", "off"], default=None)
    ap.add_argument("--perturb", action="store_true")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch.use_deterministic_algorithms(True)")
    ap.add_argument("--eval-prompts", type=int, default=0)
    ap.add_argument("--varied-reward", action="store_true",
                    help="reward even-length responses (so RL updates from the first step, "
                         "before the policy can earn the task's reward)")
    args, overrides = ap.parse_known_args(argv)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    if args.mkldnn is not None:
        torch.backends.mkldnn.enabled = args.mkldnn == "on"

    from reference_impl.config import load_config
    from reference_impl.policy.distributed import init_distributed
    from reference_impl.runlog.numerics import numerical_environment
    from reference_impl.rollout.batch import response_logprobs, teacher_forced_batch
    from reference_impl.loop.trainer import Trainer
    from reference_impl.loop.warmup import warmup_target

    out_dir = tempfile.mkdtemp(prefix="numerics_probe_")
    cfg = load_config([f"model.sft_warmup_steps={args.warmup}",
                       f"train.total_steps={max(args.rl_steps, 1)}",
                       f"train.output_dir={out_dir}", "logging.progress_bar=false",
                       "logging.tensorboard=false", *overrides], prog="numerics_probe.py")
    env = init_distributed(device="cpu")
    result: dict = {"environment": numerical_environment(), "overrides": overrides,
                    "perturb": args.perturb}

    trainer = Trainer(cfg, env)
    tok = trainer.processor.tokenizer
    result["tokenizer"] = _sha(json.dumps(
        {"vocab": sorted(tok.get_vocab().items()),
         "merges": json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]}).encode())
    # The data: rendered images (PIL), prompts and the processor's pixel values.
    train = [trainer.train_data[i] for i in range(min(args.images, len(trainer.train_data)))]
    held = [trainer.heldout[i] for i in range(min(args.images, len(trainer.heldout)))]
    result["images_train"] = _sha(b"".join(e.image.tobytes() for e in train))
    result["images_heldout"] = _sha(b"".join(e.image.tobytes() for e in held))
    result["text_train"] = _sha("\n".join(e.prompt + "|" + (e.reference or "")
                                          for e in train).encode())
    batch = teacher_forced_batch(trainer.processor, [e.prompt for e in train[:8]],
                                 [e.image for e in train[:8]],
                                 [warmup_target(e) for e in train[:8]], device=trainer.device)
    result["pixel_values"] = _tensor_sha(batch.pixel_values)
    result["input_ids"] = _tensor_sha(batch.input_ids)

    model = trainer.model
    if args.perturb:  # one weight one ulp up: the smallest difference float32 can hold
        params = dict(model.named_parameters())
        name = next((n for n in params if n.endswith("lm_head.weight")), next(iter(params)))
        with torch.no_grad():
            flat = params[name].view(-1)
            flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf"), dtype=flat.dtype))
        result["perturbed"] = f"{name}[0]"
    result["weights_init"] = _state_sha(model)

    with torch.no_grad():
        logp, _ = response_logprobs(model, batch)
    result["first_logprobs"] = _tensor_sha(logp)
    torch.save(logp.detach().cpu(), os.path.splitext(args.out)[0] + ".logprobs.pt")

    losses: list[float] = []
    step_weights: list[str] = []  # the weights' hash after each warm-up step

    class _Logger:  # what Trainer.warmup logs, kept here
        def log(self, step, row, kind=None):
            if "sft_loss" in row:
                losses.append(row["sft_loss"])
                step_weights.append(_state_sha(model))

        def progress(self, *a, **k):
            pass

    t0 = time.perf_counter()
    trainer.warmup(_Logger(), lambda: False)
    result["warmup_seconds"] = round(time.perf_counter() - t0, 1)
    result["warmup_losses_hex"] = [float(x).hex() for x in losses]
    result["warmup_losses"] = losses
    result["warmup_weights"] = step_weights
    result["weights_after_warmup"] = _state_sha(model)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               os.path.splitext(args.out)[0] + ".weights.pt")

    if args.eval_prompts:
        trainer.cfg.eval.num_prompts = args.eval_prompts
        ev = trainer.evaluate()
        result["eval_after_warmup"] = ev
        result["eval_per_prompt_sha"] = _sha(json.dumps(trainer.last_eval_per_prompt).encode())

    sampled: list[str] = []
    generate = trainer.engine.generate

    def recording_generate(*a, **k):
        b = generate(*a, **k)
        sampled.append(_tensor_sha(b.responses))
        result.setdefault("rl_responses", []).append(b.responses.tolist())
        return b

    trainer.engine.generate = recording_generate
    if args.varied_reward:
        import reference_impl.loop.rl_step as rl_step_mod
        from reference_impl.data.rewards import RewardBreakdown

        rl_step_mod.verifiable_rewards = lambda texts, answers, **_: [
            RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
            for t in texts]
    rl = []
    for _ in range(args.rl_steps):
        m = trainer.rl_step()
        trainer.run.step += 1
        rl.append({k: v for k, v in m.items() if not k.startswith("timing_s")})
    result["rl_sampled"] = sampled
    result["rl_metrics"] = rl
    result["weights_after_rl"] = _state_sha(model)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               os.path.splitext(args.out)[0] + ".weights_rl.pt")
    trainer.engine.close()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
