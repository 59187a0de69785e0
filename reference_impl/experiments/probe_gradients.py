"""Gradient-noise probe: PGPO's variance claim (Thm. E.1), measured without training.

    python reference_impl/probe_gradients.py --checkpoint runs/pgpo-tiny/checkpoints/step_00000100
    python reference_impl/probe_gradients.py --checkpoint A --checkpoint B --batches 32 \\
        --algos pgpo,dapo,pgpo_suppress_only,pgpo_boost_only,pgpo_no_mass --out runs/probe

At each checkpoint the probe draws ``K`` independent rollout batches from the policy (the
trainer's own collection: G samples per prompt, rewards, group advantages, dynamic
sampling), computes every algorithm's policy gradient on *the same* batches at the
checkpoint's weights, and never updates. At the rollout weights the importance ratio is 1,
so each gradient is the algorithm's policy gradient

    g_k = - grad_theta  agg_{i,t} A~_{i,t} log pi_theta(o_{i,t})       (A~ = A * w~ for PGPO)

with the algorithm's own aggregation (``pgpo_core.policy_loss`` with ``logp_old = logp``).
Over the ``K`` batches it reports, each with a 95% percentile-bootstrap interval over
batches:

* ``snr``: gradient signal-to-noise ``||E g||^2 / E ||g - E g||^2`` with sample means over
  the K batches (the plug-in estimate). It is invariant to a constant rescaling of the
  gradient, so it compares directions, not step sizes. Its floor is ``1 / (K - 1)``: the
  value for gradients that are pure noise (the sample mean keeps ``1/K`` of the noise).
  Its percentile-bootstrap interval is approximate (a resample repeats batches, which
  shrinks the noise term); compare algorithms on the same batches, or over seeds.
* ``cosine``: each batch gradient's cosine to the mean of the *other* batches (leave one
  out, so a batch is not compared with itself).
* ``visual_share``: ``||g_vis|| / (||g_vis|| + ||g_other||)``, where ``g_vis`` is the part
  of the gradient from visually dependent tokens (PGPO's boosted tokens at the paper's
  gate, ``I_t > tau`` with tau = 0.4; exact KL) and ``g_other`` the rest (``g = g_vis +
  g_other`` exactly, the loss being a sum over tokens).
* ``grad_norm``: ``||g||``, the step size the optimiser would see before clipping.

Any ``SECTION.FIELD=VALUE`` override is applied as in ``train.py`` (model size, data,
rollout). Writes ``<out>/probe.json`` and ``<out>/probe.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Sequence

import numpy as np

DEFAULT_ALGOS = ("pgpo", "dapo", "pgpo_suppress_only", "pgpo_boost_only", "pgpo_no_mass")
GATE = dict(tau=0.4, beta=2.0)
"""The paper's gate: tokens PGPO boosts (I_t > tau) count as visually dependent."""


# ---------------------------------------------------------------------- statistics

def gradient_snr(grads: np.ndarray) -> float:
    """``||mean g||^2 / mean_k ||g_k - mean g||^2`` over the rows of ``grads`` (K, D)."""
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] < 2:
        raise ValueError(f"grads: expected shape (K >= 2, D), got {g.shape}")
    mean = g.mean(0)
    noise = ((g - mean) ** 2).sum(1).mean()
    return float((mean ** 2).sum() / noise) if noise > 0 else float("inf")


def leave_one_out_cosines(grads: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``grads`` (K, D) to the mean of the other rows."""
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] < 2:
        raise ValueError(f"grads: expected shape (K >= 2, D), got {g.shape}")
    k = g.shape[0]
    others = (g.sum(0, keepdims=True) - g) / (k - 1)
    num = (g * others).sum(1)
    den = np.linalg.norm(g, axis=1) * np.linalg.norm(others, axis=1)
    return np.divide(num, den, out=np.zeros(k), where=den > 0)


def summarize_gradients(grads: np.ndarray, visual: np.ndarray, other: np.ndarray, *,
                        seed: int = 0) -> dict[str, Any]:
    """The probe's statistics for one algorithm: rows are batches, ``grads = visual +
    other``. Intervals are 95% percentile bootstraps over batches. With fewer than two
    batches there is no variance to measure: only ``batches`` is returned."""
    from reference_impl.experiments.stats import bootstrap_interval

    if len(grads) < 2:
        return {"batches": int(len(grads))}

    norm_v, norm_o = np.linalg.norm(visual, axis=1), np.linalg.norm(other, axis=1)
    share = np.divide(norm_v, norm_v + norm_o, out=np.zeros_like(norm_v),
                      where=norm_v + norm_o > 0)
    rows = np.arange(len(grads))
    return {
        "batches": int(len(grads)),
        "snr": bootstrap_interval(lambda i: gradient_snr(grads[i.astype(int)]), rows,
                                  seed=seed).as_dict(),
        "cosine": bootstrap_interval(np.mean, leave_one_out_cosines(grads), seed=seed).as_dict(),
        "visual_share": bootstrap_interval(np.mean, share, seed=seed).as_dict(),
        "grad_norm": bootstrap_interval(np.mean, np.linalg.norm(grads, axis=1),
                                        seed=seed).as_dict(),
    }


# ---------------------------------------------------------------------- gradients

def _algo_settings(overrides: Sequence[str], algo: str):
    """``(PGPOConfig, reweights_tokens)`` of ``algo`` under the run's overrides."""
    from reference_impl.config import load_config

    cfg = load_config(list(overrides) + [f"algo.name={algo}"], prog="probe_gradients.py",
                      check_environment=False)
    if cfg.algo.algorithm.advantages not in ("broadcast", "pgpo"):
        # The probe makes PGPO's or broadcast token advantages only; anything else would
        # be measured as DAPO's gradient under another name.
        raise ValueError(f"--algos: the gradient probe does not support {algo!r} "
                         "(its token advantages are neither PGPO's nor broadcast)")
    return cfg.pgpo_config(), cfg.algo.reweights_tokens


def probe_checkpoint(trainer, settings: dict[str, tuple[Any, bool]], *, batches: int,
                     max_draws: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per algorithm, ``{"grad", "visual", "other"}`` arrays of shape (K, D): the gradient
    on each of ``batches`` rollout batches, and its visually dependent / other parts.

    A draw in which no group is informative (all rewards equal in every group, so the
    trainer would not update) is not a batch; after ``max_draws`` draws (default
    ``4 * batches``) the probe stops with the batches it has, possibly fewer than K."""
    import torch

    import pgpo_core
    from reference_impl.rollout.batch import response_logprobs

    params = [p for p in trainer.model.parameters() if p.requires_grad]
    exact = trainer.pgpo.replace(estimator="exact")
    out: dict[str, dict[str, list[np.ndarray]]] = {a: {"grad": [], "visual": [], "other": []}
                                                   for a in settings}
    drawn = 0
    for _ in range(4 * batches if max_draws is None else max_draws):
        if drawn == batches:
            break
        collected = trainer.collect()
        batch, advantages = collected.batch, collected.advantages
        if batch is None:  # no informative group in this draw: nothing to learn from
            continue
        drawn += 1
        mask = batch.response_mask
        with torch.no_grad():
            dependency = torch.cat([
                trainer.pgpo_advantages(batch.select(list(range(s, min(s + 8, batch.size)))),
                                         advantages[s:s + 8], exact).dependency
                for s in range(0, batch.size, 8)])
            raw = pgpo_core.token_weights(dependency, mask, conserve_mass=False, **GATE)
            gate = (raw > 1) & mask
        logp, _ = response_logprobs(trainer.model, batch, temperature=trainer.pgpo.temperature)
        for algo, (config, reweights) in settings.items():
            adv = advantages
            token_adv = (pgpo_core.reshape_advantages(adv, dependency, mask,
                                                      **config.weight_kwargs())
                         if reweights else adv[:, None] * mask)
            normalizer = float(mask.sum()) if config.aggregation == "token-mean" else batch.size
            parts = []
            for part in (gate, mask & ~gate):
                loss, _ = pgpo_core.policy_loss(logp, logp.detach(), token_adv * part, mask,
                                                **config.loss_kwargs(), normalizer=normalizer)
                grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                parts.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                        for g, p in zip(grads, params)]).double().cpu().numpy())
            out[algo]["visual"].append(parts[0])
            out[algo]["other"].append(parts[1])
            out[algo]["grad"].append(parts[0] + parts[1])
    return {a: {k: (np.stack(v) if v else np.zeros((0, 0))) for k, v in d.items()}
            for a, d in out.items()}


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    def cell(iv: dict[str, float], fmt: str = ".3f") -> str:
        return f"{iv['estimate']:{fmt}} [{iv['low']:{fmt}}, {iv['high']:{fmt}}]"

    lines = ["| checkpoint | algo | gradient SNR (pure-noise floor 1/(K-1)) | cosine to mean | "
             "visual share of norm | grad norm |", "|---|---|---:|---:|---:|---:|"]
    for ckpt, per_algo in results.items():
        for algo, r in per_algo.items():
            if "snr" not in r:
                lines.append(f"| {ckpt} | {algo} | fewer than 2 informative batches "
                             f"({r['batches']}) | | | |")
                continue
            floor = 1 / (r["batches"] - 1)
            lines.append(f"| {ckpt} | {algo} | {cell(r['snr'], '.3f')} ({floor:.3f}) | "
                         f"{cell(r['cosine'])} | "
                         f"{cell(r['visual_share'])} | {cell(r['grad_norm'], '.3g')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="probe_gradients.py", description=__doc__.split("\n")[0],
        epilog="Other arguments are SECTION.FIELD=VALUE overrides of the run's config.")
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="checkpoint folder (repeat for several)")
    parser.add_argument("--batches", type=int, default=24, help="rollout batches K (>= 2)")
    parser.add_argument("--algos", default=",".join(DEFAULT_ALGOS))
    parser.add_argument("--out", default="runs/probe")
    args, overrides = parser.parse_known_args(argv)
    if args.batches < 2:
        parser.error("--batches: at least 2 batches are needed for a variance")
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]

    import torch

    from reference_impl.config import load_config
    from reference_impl.policy.distributed import init_distributed, shutdown
    from reference_impl.loop.trainer import Trainer

    settings = {a: _algo_settings(overrides, a) for a in algos}
    try:
        labels = checkpoint_labels(args.checkpoint)
    except ValueError as err:
        parser.error(str(err))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    env = init_distributed(device="auto", backend="auto", timeout_minutes=30)
    try:
        for path, name in zip(args.checkpoint, labels):
            cfg = load_config(list(overrides) + [
                "algo.name=pgpo", f"checkpoint.resume={path}", "model.sft_warmup_steps=0",
                "logging.progress_bar=false"], prog="probe_gradients.py")
            trainer = Trainer(cfg, env)
            trainer.resume()
            torch.manual_seed(cfg.train.seed)
            grads = probe_checkpoint(trainer, settings, batches=args.batches)
            results[name] = {a: summarize_gradients(g["grad"], g["visual"], g["other"])
                             for a, g in grads.items()}
            print(_table({name: results[name]}), flush=True)
    finally:
        shutdown()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "probe.json"), "w") as f:
        json.dump({"batches": args.batches, "overrides": overrides, "results": results}, f,
                  indent=2)
    with open(os.path.join(args.out, "probe.md"), "w") as f:
        f.write(_table(results))
    return results


def checkpoint_labels(paths: list[str]) -> list[str]:
    """A label per checkpoint for the tables: its folder name (``step_00000100``), or its
    whole path where two folder names are the same (``step_00000000`` of two warm-ups)."""
    full = [os.path.normpath(p) for p in paths]
    if len(set(full)) != len(full):
        raise ValueError("--checkpoint: the same checkpoint is given twice")
    names = [os.path.basename(p) for p in full]
    return [n if names.count(n) == 1 else p for n, p in zip(names, full)]

