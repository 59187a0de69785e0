"""Token-level simulator for a regime map of token credit: when do PGPO (and VPPO) help?

PGPO's noise-suppression argument (Thm. E.1 of Ye et al. 2026) says token credit pays
when a response holds many uncertain, reward-uncorrelated language tokens next to a few
perception tokens that decide the reward, and the dependency tells the two apart. This
simulator varies exactly those things and measures learning speed and gradient SNR for
PGPO, DAPO, GRPO and VPPO, vectorised over seeds (issue 16, item 4).

Model (per seed: one "image", one policy):

- A response is ``T = L + k`` tokens from a vocabulary of ``V``: ``L`` language tokens,
  then ``k`` perception tokens. Perception position ``j`` has a correct token ``c*_j``;
  the reward is the fraction of perception tokens that are correct (language tokens never
  change it).
- Policy: a softmax per position, ``pi_t = softmax(b_t + U h_t)``, ``U`` (``V x d``) the
  trained parameters, ``h_t`` a fixed feature of position ``t``, ``b_t`` a fixed bias.
  ``--features tabular``: ``h_t`` one-hot (``d = T``), i.e. tabular logits per position:
  every position has its own parameters. ``--features shared`` (default): ``h_t`` random
  unit vectors in ``d`` dimensions, so positions share parameters as they do in a
  network, and a language token's gradient lands partly on the perception tokens'
  logits. (With tabular logits token credit cannot change the SNR of the perception
  parameters at all when the dependency is exact: it only rescales their gradient; see
  the tests.)
- Language entropy: ``b_t`` of a language position peaks on one random token, the peak
  chosen so the position's initial entropy is ``h * log V`` (``h`` in (0, 1]). Perception
  positions start uniform (``1 / V`` correct).
- Observed dependency: ``S = exp(mu_t + sigma * eps)``, ``eps ~ N(0, 1)``, with
  ``mu = log 1`` on perception tokens and ``log 0.05`` on language tokens; ``sigma`` is
  the dependency noise (0: exact ranking).
- Each step samples ``P`` groups of ``G`` responses on policy, computes advantages and
  takes one Adam step (``--optimizer``, also ``sgd``) on the policy-gradient estimate
  ``g = sum_{i,t} A^_{i,t} grad log pi(o_{i,t}) / D``. On policy the ratio is 1, so this
  is the gradient of the clipped surrogate (no clipping acts).

Algorithms (advantages from pgpo_core; nothing is re-implemented here):

- GRPO: ``group_advantages`` on every group, loss ``seq-mean-token-mean`` (``D = N T``).
- DAPO: ``group_advantages``, groups whose rewards are all equal dropped (dynamic
  sampling without refill), ``token-mean`` over the kept responses' tokens.
- PGPO: DAPO with ``reshape_advantages`` (``tau``, ``beta``).
- VPPO: DAPO with ``vppo_advantages`` (published defaults ``top_p = 0.4``,
  ``scale_min = 0.9``); filtered tokens stay in the divisor, as in VPPO's code.

Every algorithm sees the same random numbers at each step of a seed (common random
numbers), so per-seed differences are paired. Group advantages and VPPO, whose
statistics run over a batch, are evaluated per seed with ``jax.vmap`` over the core
functions; PGPO's weights are per response and run on numpy.

Metrics per cell and algorithm (over seeds): expected reward ``R(U) = mean_j pi_j(c*_j)``
after ``--steps`` steps, its mean over the run (AUC), steps to reach ``--threshold``;
gradient SNR at the initial policy from ``--snr-batches`` independent batches,
``||mean g||^2 / (sum_r ||g_r - mean g||^2 / (R - 1))`` over all of ``U``, and the mean
cosine between ``g_r`` and the exact gradient of ``R``. Paired differences (PGPO minus
DAPO, GRPO, VPPO) come with 95 % confidence intervals over seeds.

Usage::

    python bench/simulate_regimes.py --quick            # seconds: a 2 x 2 grid, 32 seeds, 30 steps
    python bench/simulate_regimes.py                    # the full grid (a few minutes)
    python bench/simulate_regimes.py --out some/folder  # where the JSON and PNG go
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import itertools
import json
import math
import pathlib
import sys
import time
from typing import Any

import numpy as np

ALGORITHMS = ("grpo", "dapo", "pgpo", "vppo")
MU_PERCEPTION = 0.0
MU_LANGUAGE = math.log(0.05)
GROUP_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    L: int
    k: int = 4
    lang_entropy: float = 0.9
    sigma: float = 0.0
    tau: float = 0.4
    beta: float = 2.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """What stays fixed over a grid."""

    seeds: int = 96
    steps: int = 50
    vocab: int = 8
    dim: int = 8
    features: str = "shared"
    prompts: int = 4
    group: int = 8
    optimizer: str = "adam"
    lr: float = 0.05
    clip_norm: float | None = None
    threshold: float = 0.6
    snr_batches: int = 12
    top_p: float = 0.4
    scale_min: float = 0.9
    base_seed: int = 0


# ----------------------------------------------------------------------- environment


def _entropy_peak(target: float, vocab: int) -> float:
    """The peak ``a`` for which softmax([a, 0, ..., 0]) has entropy ``target`` (nats)."""
    if target >= math.log(vocab) - 1e-12:
        return 0.0

    def entropy(a: float) -> float:
        z = np.array([a] + [0.0] * (vocab - 1))
        p = np.exp(z - z.max())
        p /= p.sum()
        return float(-(p * np.log(np.maximum(p, 1e-300))).sum())

    lo, hi = 0.0, 60.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if entropy(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclasses.dataclass
class Env:
    """The fixed part of every seed: features, biases, correct tokens."""

    h: np.ndarray  # (S, T, d) position features
    bias: np.ndarray  # (S, T, V)
    target: np.ndarray  # (S, k) correct perception tokens
    L: int
    k: int

    @property
    def T(self) -> int:
        return self.L + self.k


def make_env(cell: Cell, settings: Settings, seed: int) -> Env:
    rng = np.random.default_rng([settings.base_seed, seed, 1])
    S, V, T = settings.seeds, settings.vocab, cell.L + cell.k
    if settings.features == "tabular":
        h = np.broadcast_to(np.eye(T), (S, T, T)).copy()
    elif settings.features == "shared":
        h = rng.standard_normal((S, T, settings.dim))
        h /= np.linalg.norm(h, axis=-1, keepdims=True)
    else:
        raise ValueError(f"features: must be 'shared' or 'tabular', got {settings.features!r}")
    bias = np.zeros((S, T, V))
    if cell.L:
        peak = _entropy_peak(cell.lang_entropy * math.log(V), V)
        favourite = rng.integers(V, size=(S, cell.L))
        bias[:, :cell.L] = peak * np.eye(V)[favourite]
    target = rng.integers(V, size=(S, cell.k))
    return Env(h=h, bias=bias, target=target, L=cell.L, k=cell.k)


def policy(env: Env, U: np.ndarray) -> np.ndarray:
    """``(S, T, V)`` next-token probabilities for parameters ``U`` ``(S, V, d)``."""
    z = env.bias + np.einsum("svd,std->stv", U, env.h)
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(-1, keepdims=True)


def expected_reward(env: Env, p: np.ndarray) -> np.ndarray:
    """``(S,)`` the exact expected reward ``mean_j pi_j(c*_j)``."""
    perception = p[:, env.L:, :]
    return np.take_along_axis(perception, env.target[:, :, None], axis=-1)[..., 0].mean(-1)


def reward_gradient(env: Env, p: np.ndarray) -> np.ndarray:
    """``(S, V, d)`` the exact gradient of :func:`expected_reward` with respect to ``U``."""
    S, T, V = p.shape
    coeff = np.zeros((S, T, V))
    perception = p[:, env.L:, :]
    onehot = np.eye(V)[env.target]
    p_star = (perception * onehot).sum(-1, keepdims=True)
    coeff[:, env.L:, :] = p_star * (onehot - perception) / env.k
    return np.einsum("stv,std->svd", coeff, env.h)


@dataclasses.dataclass
class Batch:
    tokens: np.ndarray  # (S, N, T) int
    onehot: np.ndarray  # (S, N, T, V)
    rewards: np.ndarray  # (S, N)
    dependency: np.ndarray  # (S, N, T)


def sample_batch(env: Env, p: np.ndarray, settings: Settings, cell: Cell,
                 uniforms: np.ndarray, noise: np.ndarray) -> Batch:
    """One on-policy batch from given random numbers (``uniforms`` ``(S, N, T)`` in [0, 1),
    ``noise`` ``(S, N, T)`` standard normal)."""
    V = settings.vocab
    cdf = np.cumsum(p, axis=-1)
    tokens = (uniforms[..., None] >= cdf[:, None, :, :]).sum(-1)
    tokens = np.minimum(tokens, V - 1)
    onehot = np.eye(V)[tokens]
    correct = tokens[:, :, env.L:] == env.target[:, None, :]
    rewards = correct.mean(-1)
    mu = np.where(np.arange(env.T) >= env.L, MU_PERCEPTION, MU_LANGUAGE)
    dependency = np.exp(mu + cell.sigma * noise)
    return Batch(tokens=tokens, onehot=onehot, rewards=rewards, dependency=dependency)


# ------------------------------------------------------------------------- advantages


@functools.lru_cache(maxsize=None)
def _jitted(kind: str, n: int, group: int, top_p: float, scale_min: float):
    """jit(vmap(core function)) over the seed axis; cached per shape and settings."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import pgpo_core

    group_ids = jnp.asarray(np.repeat(np.arange(n // group), group))
    if kind == "group":
        def one(rewards):
            out = pgpo_core.group_advantages(rewards, group_ids, eps=GROUP_EPS)
            return out.advantages, out.all_equal
    else:
        def one(advantages, dependency, mask):
            return pgpo_core.vppo_advantages(advantages, dependency, mask, top_p=top_p,
                                             scale_min=scale_min).advantages
    return jax.jit(jax.vmap(one))


def token_advantages(algo: str, batch: Batch, cell: Cell, settings: Settings):
    """``(A^ (S, N, T), divisor (S,))`` of one algorithm for one batch."""
    import pgpo_core

    S, N, T = batch.dependency.shape
    adv, all_equal = _jitted("group", N, settings.group, 0.0, 0.0)(batch.rewards)
    adv, all_equal = np.asarray(adv), np.asarray(all_equal)
    if algo == "grpo":
        return np.repeat(adv[:, :, None], T, axis=2), np.full(S, float(N * T))
    kept = ~all_equal  # DAPO's dynamic sampling (no refill)
    divisor = kept.sum(1) * float(T)
    mask = np.broadcast_to(kept[:, :, None], (S, N, T))
    if algo == "dapo":
        shaped = np.where(mask, adv[:, :, None], 0.0)
    elif algo == "pgpo":
        flat = pgpo_core.reshape_advantages(
            adv.reshape(S * N), batch.dependency.reshape(S * N, T),
            np.ones((S * N, T), bool), tau=cell.tau, beta=cell.beta)
        shaped = np.where(mask, np.asarray(flat).reshape(S, N, T), 0.0)
    elif algo == "vppo":
        fn = _jitted("vppo", N, settings.group, settings.top_p, settings.scale_min)
        shaped = np.asarray(fn(adv, batch.dependency, np.ascontiguousarray(mask)))
    else:
        raise ValueError(f"algo: must be one of {ALGORITHMS}, got {algo!r}")
    return shaped, divisor


def policy_gradient(env: Env, p: np.ndarray, batch: Batch, shaped: np.ndarray,
                    divisor: np.ndarray) -> np.ndarray:
    """``(S, V, d)``: ``sum_{i,t} A^_{i,t} grad_U log pi_t(o_{i,t}) / divisor``, with
    ``grad_U log pi_t(c) = (e_c - pi_t) h_t^T``."""
    m = np.einsum("snt,sntv->stv", shaped, batch.onehot) - shaped.sum(1)[..., None] * p
    g = np.einsum("stv,std->svd", m, env.h)
    return g / np.maximum(divisor, 1.0)[:, None, None]


# ---------------------------------------------------------------------------- training


def _random_numbers(settings: Settings, cell_seed: int, step: int, shape):
    rng = np.random.default_rng([settings.base_seed, cell_seed, 2, step])
    return rng.random(shape), rng.standard_normal(shape)


def train(algo: str, env: Env, cell: Cell, settings: Settings, cell_seed: int) -> np.ndarray:
    """``(steps + 1, S)`` expected reward along the run."""
    S, V, d = env.h.shape[0], settings.vocab, env.h.shape[2]
    N = settings.prompts * settings.group
    U = np.zeros((S, V, d))
    m1, m2 = np.zeros_like(U), np.zeros_like(U)
    curve = np.empty((settings.steps + 1, S))
    p = policy(env, U)
    curve[0] = expected_reward(env, p)
    for step in range(settings.steps):
        u, eps = _random_numbers(settings, cell_seed, step, (S, N, env.T))
        batch = sample_batch(env, p, settings, cell, u, eps)
        shaped, divisor = token_advantages(algo, batch, cell, settings)
        g = policy_gradient(env, p, batch, shaped, divisor)
        if settings.clip_norm is not None:
            norm = np.sqrt((g * g).sum((1, 2), keepdims=True))
            g = g * np.minimum(1.0, settings.clip_norm / np.maximum(norm, 1e-12))
        if settings.optimizer == "adam":
            m1 = 0.9 * m1 + 0.1 * g
            m2 = 0.999 * m2 + 0.001 * g * g
            hat1 = m1 / (1 - 0.9 ** (step + 1))
            hat2 = m2 / (1 - 0.999 ** (step + 1))
            U = U + settings.lr * hat1 / (np.sqrt(hat2) + 1e-8)
        else:
            U = U + settings.lr * g
        p = policy(env, U)
        curve[step + 1] = expected_reward(env, p)
    return curve


def gradient_snr(env: Env, cell: Cell, settings: Settings, cell_seed: int,
                 algos=ALGORITHMS) -> dict[str, dict[str, np.ndarray]]:
    """Per seed, at the initial policy: SNR and mean cosine with the exact gradient, from
    ``snr_batches`` batches shared by every algorithm."""
    S, V, d = env.h.shape[0], settings.vocab, env.h.shape[2]
    N = settings.prompts * settings.group
    U = np.zeros((S, V, d))
    p = policy(env, U)
    true = reward_gradient(env, p).reshape(S, -1)
    true_norm = np.linalg.norm(true, axis=1)
    grads = {a: [] for a in algos}
    for r in range(settings.snr_batches):
        u, eps = _random_numbers(settings, cell_seed, 10_000 + r, (S, N, env.T))
        batch = sample_batch(env, p, settings, cell, u, eps)
        for a in algos:
            shaped, divisor = token_advantages(a, batch, cell, settings)
            grads[a].append(policy_gradient(env, p, batch, shaped, divisor).reshape(S, -1))
    out = {}
    for a in algos:
        g = np.stack(grads[a])  # (R, S, V d)
        mean = g.mean(0)
        noise = ((g - mean) ** 2).sum(-1).sum(0) / (g.shape[0] - 1)
        signal = (mean ** 2).sum(-1)
        cos = (g * true).sum(-1) / np.maximum(np.linalg.norm(g, axis=-1) * true_norm, 1e-300)
        out[a] = {"snr": signal / np.maximum(noise, 1e-300), "cos": cos.mean(0)}
    return out


def steps_to(curve: np.ndarray, threshold: float) -> np.ndarray:
    """First step whose expected reward reaches ``threshold``; ``steps + 1`` if none."""
    reached = curve >= threshold
    first = np.argmax(reached, axis=0)
    return np.where(reached.any(0), first, curve.shape[0])


def _ci(x: np.ndarray) -> list[float]:
    x = np.asarray(x, dtype=float)
    mean = float(x.mean())
    half = float(1.96 * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")
    return [mean, mean - half, mean + half]


def simulate_cell(cell: Cell, settings: Settings, cell_seed: int, algos=ALGORITHMS,
                  ) -> dict[str, dict[str, np.ndarray]]:
    """Per-seed metrics of each algorithm in ``algos`` for one cell."""
    env = make_env(cell, settings, cell_seed)
    per_algo: dict[str, dict[str, np.ndarray]] = {}
    for a in algos:
        curve = train(a, env, cell, settings, cell_seed)
        per_algo[a] = {"final": curve[-1], "auc": curve.mean(0),
                       "steps_to": steps_to(curve, settings.threshold).astype(float)}
    for a, values in gradient_snr(env, cell, settings, cell_seed, algos).items():
        per_algo[a]["snr"] = values["snr"]
        per_algo[a]["cos"] = values["cos"]
    return per_algo


def summarise(cell: Cell, per_algo: dict[str, dict[str, np.ndarray]]) -> dict:
    result: dict[str, Any] = {"cell": dataclasses.asdict(cell), "algorithms": {},
                              "pgpo_minus": {}}
    for a, v in per_algo.items():
        result["algorithms"][a] = {
            "final_reward": _ci(v["final"]), "auc": _ci(v["auc"]),
            "steps_to_threshold": _ci(v["steps_to"]),
            "snr_median": float(np.median(v["snr"])), "cos": _ci(v["cos"]),
        }
    if "pgpo" in per_algo:
        for other in per_algo:
            if other == "pgpo":
                continue
            a, b = per_algo["pgpo"], per_algo[other]
            result["pgpo_minus"][other] = {
                "final_reward": _ci(a["final"] - b["final"]),
                "auc": _ci(a["auc"] - b["auc"]),
                "steps_to_threshold": _ci(a["steps_to"] - b["steps_to"]),
                "log_snr_ratio": _ci(np.log(a["snr"]) - np.log(b["snr"])),
                "cos": _ci(a["cos"] - b["cos"]),
            }
    return result


def cell_seed_of(cell: Cell) -> int:
    """One seed per (L, k, entropy, sigma): every (tau, beta) sees the same environments
    and random numbers, so the baselines are shared and PGPO's settings are paired."""
    key = [cell.L, cell.k, int(round(cell.lang_entropy * 1000)), int(round(cell.sigma * 1000))]
    return int(np.random.default_rng(key).integers(2**31))


def verdict(ci: list[float]) -> str:
    """helps / hurts when the paired 95 % CI excludes 0, no difference otherwise."""
    _, lo, hi = ci
    return "helps" if lo > 0 else "hurts" if hi < 0 else "no difference"


# ------------------------------------------------------------------------------- grid


def grid(quick: bool) -> tuple[list[Cell], Settings]:
    if quick:
        cells = [Cell(L=L, sigma=s) for L, s in itertools.product((0, 16), (0.0, 2.0))]
        return cells, Settings(seeds=32, steps=30, snr_batches=8)
    cells = []
    for ratio, h, sigma in itertools.product((0, 1, 4, 16), (0.3, 0.9), (0.0, 1.0, 3.0)):
        for tau, beta in ((0.4, 2.0), (0.0, 0.0), (1.0, 2.0), (0.4, 0.5)):
            if ratio == 0 and h != 0.9:
                continue  # no language tokens: the entropy axis is empty
            cells.append(Cell(L=4 * ratio, lang_entropy=h, sigma=sigma, tau=tau, beta=beta))
    return cells, Settings()


def run_grid(cells: list[Cell], settings: Settings, log=None) -> list[dict]:
    log = log or functools.partial(print, flush=True)
    results = []
    baselines: dict[tuple, dict] = {}  # GRPO, DAPO, VPPO do not depend on tau, beta
    for index, cell in enumerate(cells):
        start = time.perf_counter()
        base_key = (cell.L, cell.k, cell.lang_entropy, cell.sigma)
        seed = cell_seed_of(cell)
        if base_key in baselines:
            per_algo = {**baselines[base_key],
                        **simulate_cell(cell, settings, seed, algos=("pgpo",))}
        else:
            per_algo = simulate_cell(cell, settings, seed)
            baselines[base_key] = {a: v for a, v in per_algo.items() if a != "pgpo"}
        res = summarise(cell, {a: per_algo[a] for a in ALGORITHMS})
        res["seconds"] = time.perf_counter() - start
        results.append(res)
        d = res["pgpo_minus"]
        log(f"[{index + 1}/{len(cells)}] L={cell.L} k={cell.k} h={cell.lang_entropy} "
            f"sigma={cell.sigma} tau={cell.tau} beta={cell.beta}: "
            + " ".join(f"{a}={res['algorithms'][a]['final_reward'][0]:.3f}" for a in ALGORITHMS)
            + f" | PGPO-DAPO {d['dapo']['final_reward'][0]:+.3f} "
            f"logSNR {d['dapo']['log_snr_ratio'][0]:+.2f} ({res['seconds']:.1f} s)")
    return results


# ------------------------------------------------------------------------------ output


def write_figure(results: list[dict], path: pathlib.Path, tau: float = 0.4,
                 beta: float = 2.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r["cell"]["tau"] == tau and r["cell"]["beta"] == beta]
    if not rows:
        rows = results
    ratios = sorted({r["cell"]["L"] // r["cell"]["k"] for r in rows})
    sigmas = sorted({r["cell"]["sigma"] for r in rows})
    entropies = sorted({r["cell"]["lang_entropy"] for r in rows})
    panels = [("final reward: PGPO - DAPO", "dapo", "final_reward"),
              ("final reward: PGPO - VPPO", "vppo", "final_reward"),
              ("log SNR ratio PGPO / DAPO", "dapo", "log_snr_ratio")]
    fig, axes = plt.subplots(len(panels), len(entropies),
                             figsize=(3.6 * len(entropies) + 1, 3.0 * len(panels)),
                             squeeze=False)
    for (title, other, metric), axrow in zip(panels, axes):
        values = np.full((len(entropies), len(sigmas), len(ratios)), np.nan)
        marks = np.full(values.shape, "", dtype=object)
        for r in rows:
            c = r["cell"]
            e_i = entropies.index(c["lang_entropy"]) if c["L"] else None
            ci = r["pgpo_minus"][other][metric]
            targets = range(len(entropies)) if e_i is None else [e_i]
            for e in targets:  # L = 0 has no language: the same cell in every column
                idx = (e, sigmas.index(c["sigma"]), ratios.index(c["L"] // c["k"]))
                values[idx] = ci[0]
                marks[idx] = {"helps": "+", "hurts": "-", "no difference": "0"}[verdict(ci)]
        lim = np.nanmax(np.abs(values)) or 1.0
        for e, ax in enumerate(axrow):
            im = ax.imshow(values[e], cmap="RdBu", vmin=-lim, vmax=lim, origin="lower",
                           aspect="auto")
            for s_i, r_i in itertools.product(range(len(sigmas)), range(len(ratios))):
                if not np.isnan(values[e, s_i, r_i]):
                    ax.text(r_i, s_i, f"{values[e, s_i, r_i]:+.2f}\n{marks[e, s_i, r_i]}",
                            ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(ratios)), [str(x) for x in ratios])
            ax.set_yticks(range(len(sigmas)), [str(x) for x in sigmas])
            ax.set_xlabel("L / k (language tokens per perception token)")
            ax.set_ylabel("dependency noise sigma")
            ax.set_title(f"{title}\nlanguage entropy {entropies[e]:.1f} log V", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"Token-level simulator, PGPO at tau={tau}, beta={beta}\npaired means over "
                 "seeds; + helps, 0 no difference, - hurts (95 % CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(results: list[dict]) -> str:
    """One row per cell: each algorithm's final reward, and PGPO's paired differences with
    their verdicts (primary: final reward; secondary: AUC, log SNR ratio)."""
    lines = ["| L/k | h | sigma | tau | beta | GRPO | DAPO | VPPO | PGPO | "
             "PGPO-DAPO final [95% CI] | PGPO-VPPO final [95% CI] | PGPO-GRPO final | "
             "PGPO-DAPO AUC | log SNR PGPO/DAPO | log SNR PGPO/VPPO |",
             "|" + "---|" * 15]

    def fmt(ci, digits=3):
        return (f"{ci[0]:+.{digits}f} [{ci[1]:+.{digits}f}, {ci[2]:+.{digits}f}] "
                f"{verdict(ci)}")

    for r in results:
        c, a, d = r["cell"], r["algorithms"], r["pgpo_minus"]
        lines.append(
            f"| {c['L'] // c['k']} | {c['lang_entropy'] if c['L'] else '-'} | {c['sigma']} "
            f"| {c['tau']} | {c['beta']} | "
            + " | ".join(f"{a[x]['final_reward'][0]:.3f}" for x in ("grpo", "dapo", "vppo",
                                                                     "pgpo"))
            + f" | {fmt(d['dapo']['final_reward'])} | {fmt(d['vppo']['final_reward'])} "
            f"| {fmt(d['grpo']['final_reward'])} | {fmt(d['dapo']['auc'])} "
            f"| {fmt(d['dapo']['log_snr_ratio'], 2)} | {fmt(d['vppo']['log_snr_ratio'], 2)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2 x 2 grid with 32 seeds")
    parser.add_argument("--out", default=None,
                        help="output folder (default docs/evidence/<today>_regimes)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--features", choices=("shared", "tabular"), default=None)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--clip-norm", type=float, default=None)
    parser.add_argument("--paper-tau-beta-only", action="store_true",
                        help="keep only PGPO's paper setting (tau 0.4, beta 2) and the "
                             "tau = beta = 0 null cells")
    parser.add_argument("--table", metavar="JSON", default=None,
                        help="print the markdown table of an earlier run's regimes.json "
                             "and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(pathlib.Path(args.table).read_text())["cells"]), end="")
        return 0
    cells, settings = grid(args.quick)
    if args.paper_tau_beta_only:
        cells = [c for c in cells if (c.tau, c.beta) in ((0.4, 2.0), (0.0, 0.0))]
    overrides = {k: v for k, v in dict(seeds=args.seeds, steps=args.steps,
                                       features=args.features, optimizer=args.optimizer,
                                       lr=args.lr, clip_norm=args.clip_norm).items()
                 if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    root = pathlib.Path(__file__).resolve().parents[1]
    out = pathlib.Path(args.out) if args.out else (
        root / "docs" / "evidence" / f"{datetime.date.today().isoformat()}_regimes")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_grid(cells, settings)
    seconds = time.perf_counter() - start
    payload = {"settings": dataclasses.asdict(settings), "quick": args.quick,
               "argv": sys.argv[1:] if argv is None else argv,
               "seconds": seconds, "python": sys.version.split()[0],
               "numpy": np.__version__, "cells": results}
    (out / "regimes.json").write_text(json.dumps(payload, indent=1))
    write_figure(results, out / "regimes.png")
    (out / "regimes_table.md").write_text(markdown_table(results))
    print(f"{len(cells)} cells x {settings.seeds} seeds in {seconds:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
