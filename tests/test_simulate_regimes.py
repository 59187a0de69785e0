"""The regime simulator (bench/simulate_regimes.py) on cases whose answer is known.

- tau = 0, beta = 0: PGPO's weights are exactly 1, so its run is DAPO's, value for value.
- No language tokens and no dependency noise: every token of a response has the same
  dependency, PGPO's weights fall back to 1, and again PGPO's run is DAPO's exactly.
- Tabular logits with exact dependency: PGPO gives language tokens weight 0 and each
  perception token (L + k) / k, so its gradient on the perception positions' parameters
  is DAPO's times (L + k) / k exactly, and 0 on the language positions' parameters.
- Shared parameters, many high-entropy language tokens, exact dependency: PGPO drops the
  language tokens' reward-independent gradient noise, so its gradient SNR is higher than
  DAPO's (a paired 95 % interval over seeds above 0).
- The pieces: the policy gradient against torch autograd, the exact reward gradient
  against finite differences, the vmapped core calls against one core call per seed.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "simulate_regimes.py"


@pytest.fixture(scope="module")
def sim():
    spec = importlib.util.spec_from_file_location("simulate_regimes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["simulate_regimes"] = module
    spec.loader.exec_module(module)
    return module


def _settings(sim, **kw):
    base = dict(seeds=6, steps=6, snr_batches=4, prompts=2, group=4)
    return sim.Settings(**{**base, **kw})


def test_tau_0_beta_0_is_dapo_exactly(sim):
    cell = sim.Cell(L=8, sigma=1.0, tau=0.0, beta=0.0)
    settings = _settings(sim)
    env = sim.make_env(cell, settings, 3)
    pgpo = sim.train("pgpo", env, cell, settings, 3)
    dapo = sim.train("dapo", env, cell, settings, 3)
    np.testing.assert_array_equal(pgpo, dapo)
    assert dapo[-1].mean() > dapo[0].mean()  # and something was learned


def test_no_language_no_noise_is_dapo_exactly(sim):
    cell = sim.Cell(L=0, sigma=0.0, tau=0.4, beta=2.0)
    settings = _settings(sim)
    env = sim.make_env(cell, settings, 5)
    np.testing.assert_array_equal(sim.train("pgpo", env, cell, settings, 5),
                                  sim.train("dapo", env, cell, settings, 5))


def test_tabular_exact_dependency_rescales_the_perception_gradient(sim):
    # L = 6, k = 4: PGPO's I is 0 on language, 1 on perception; w = [0] * 6 + [3] * 4
    # (1 + 2 (1 - 0.4) / 0.6 = 3), Eq. 7: w~ = 3 * 10 / 12 = 2.5 = (L + k) / k.
    cell = sim.Cell(L=6, k=4, sigma=0.0)
    settings = _settings(sim, features="tabular")
    env = sim.make_env(cell, settings, 7)
    p = sim.policy(env, np.zeros((settings.seeds, settings.vocab, cell.L + cell.k)))
    n = settings.prompts * settings.group
    u, eps = sim._random_numbers(settings, 7, 0, (settings.seeds, n, cell.L + cell.k))
    batch = sim.sample_batch(env, p, settings, cell, u, eps)
    grads = {}
    for algo in ("dapo", "pgpo"):
        shaped, divisor = sim.token_advantages(algo, batch, cell, settings)
        grads[algo] = sim.policy_gradient(env, p, batch, shaped, divisor)
    perception = slice(cell.L, None)
    np.testing.assert_allclose(grads["pgpo"][:, :, perception],
                               2.5 * grads["dapo"][:, :, perception], rtol=1e-6, atol=1e-12)
    assert np.abs(grads["pgpo"][:, :, :cell.L]).max() < 1e-6
    assert np.abs(grads["dapo"][:, :, :cell.L]).max() > 1e-3  # DAPO's language noise


def test_pgpo_snr_exceeds_dapo_with_many_noisy_language_tokens(sim):
    cell = sim.Cell(L=32, k=4, lang_entropy=0.95, sigma=0.0)
    settings = _settings(sim, seeds=24, snr_batches=8)
    env = sim.make_env(cell, settings, 11)
    out = sim.gradient_snr(env, cell, settings, 11, algos=("dapo", "pgpo"))
    log_ratio = np.log(out["pgpo"]["snr"]) - np.log(out["dapo"]["snr"])
    mean, low, high = sim._ci(log_ratio)
    assert low > 0, (mean, low, high)
    # and PGPO's gradient points closer to the exact reward gradient
    assert sim._ci(out["pgpo"]["cos"] - out["dapo"]["cos"])[1] > 0


def test_policy_gradient_matches_autograd(sim):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    cell = sim.Cell(L=3, k=2, sigma=1.0)
    settings = _settings(sim, seeds=2)
    env = sim.make_env(cell, settings, 1)
    rng = np.random.default_rng(0)
    U = rng.standard_normal((2, settings.vocab, settings.dim)) * 0.3
    p = sim.policy(env, U)
    n = settings.prompts * settings.group
    u, eps = sim._random_numbers(settings, 1, 0, (2, n, cell.L + cell.k))
    batch = sim.sample_batch(env, p, settings, cell, u, eps)
    shaped = rng.standard_normal(batch.dependency.shape)
    divisor = np.array([7.0, 3.0])
    got = sim.policy_gradient(env, p, batch, shaped, divisor)

    def objective(Ut):  # sum_s sum_{i,t} A^ log pi(o_{i,t}) / divisor_s
        logits = env.bias + jnp.einsum("svd,std->stv", Ut, env.h)
        logp = jax.nn.log_softmax(logits, -1)  # (S, T, V)
        chosen = jnp.take_along_axis(logp[:, None], batch.tokens[..., None], axis=3)[..., 0]
        return ((shaped * chosen).sum((1, 2)) / divisor).sum()

    np.testing.assert_allclose(got, np.asarray(jax.grad(objective)(jnp.asarray(U))),
                               rtol=1e-10, atol=1e-12)


def test_reward_gradient_matches_finite_differences(sim):
    cell = sim.Cell(L=2, k=3)
    settings = _settings(sim, seeds=2)
    env = sim.make_env(cell, settings, 2)
    U = np.random.default_rng(1).standard_normal((2, settings.vocab, settings.dim)) * 0.5
    grad = sim.reward_gradient(env, sim.policy(env, U))
    h = 1e-6
    for index in [(0, 0, 0), (1, 3, 2), (0, 5, 7), (1, 7, 1)]:
        up, down = U.copy(), U.copy()
        up[index] += h
        down[index] -= h
        fd = (sim.expected_reward(env, sim.policy(env, up))
              - sim.expected_reward(env, sim.policy(env, down))) / (2 * h)
        assert fd[index[0]] == pytest.approx(grad[index], abs=1e-8)


def test_vmapped_core_calls_equal_one_call_per_seed(sim):
    import pgpo_core

    cell = sim.Cell(L=5, sigma=2.0)
    settings = _settings(sim, seeds=3)
    env = sim.make_env(cell, settings, 4)
    p = sim.policy(env, np.zeros((3, settings.vocab, settings.dim)))
    n = settings.prompts * settings.group
    u, eps = sim._random_numbers(settings, 4, 0, (3, n, cell.L + cell.k))
    batch = sim.sample_batch(env, p, settings, cell, u, eps)
    batch.rewards[0] = 0.5  # seed 0: every group all equal -> DAPO keeps nothing
    vppo, divisor = sim.token_advantages("vppo", batch, cell, settings)
    groups = np.repeat(np.arange(settings.prompts), settings.group)
    for s in range(3):
        g = pgpo_core.group_advantages(batch.rewards[s], groups, eps=sim.GROUP_EPS)
        keep = ~g.all_equal
        assert divisor[s] == keep.sum() * (cell.L + cell.k)
        want = pgpo_core.vppo_advantages(g.advantages, batch.dependency[s],
                                         np.repeat(keep[:, None], cell.L + cell.k, 1))
        np.testing.assert_allclose(vppo[s], want.advantages, rtol=1e-12, atol=1e-15)
    assert divisor[0] == 0 and not vppo[0].any()


def test_command_line_writes_json_and_figure(sim, tmp_path):
    cells = [sim.Cell(L=0), sim.Cell(L=4, sigma=1.0), sim.Cell(L=4, sigma=1.0, tau=0.0, beta=0.0)]
    settings = _settings(sim, seeds=4, steps=3)
    results = sim.run_grid(cells, settings, log=lambda *a: None)
    # the (tau, beta) = (0, 0) cell reuses the baselines and equals DAPO exactly
    d = results[2]["pgpo_minus"]["dapo"]
    assert d["final_reward"] == [0.0, 0.0, 0.0] and d["log_snr_ratio"][0] == 0.0
    assert results[1]["algorithms"]["dapo"] == results[2]["algorithms"]["dapo"]
    sim.write_figure(results, tmp_path / "regimes.png")
    assert (tmp_path / "regimes.png").stat().st_size > 10_000
    json.dumps(results)  # plain JSON types only
    table = sim.markdown_table(results).splitlines()
    assert len(table) == 2 + len(cells)
    assert table[2].startswith("| 0 | - | 0.0 | 0.4 | 2.0 |")  # L = 0: no entropy axis
    assert table[3].startswith("| 1 | 0.9 | 1.0 | 0.4 | 2.0 |")
    assert "| +0.000 [+0.000, +0.000] no difference |" in table[4]  # the null cell
    assert sim.verdict([0.1, 0.02, 0.2]) == "helps"
    assert sim.verdict([-0.1, -0.2, -0.01]) == "hurts"
    assert sim.verdict([0.1, -0.02, 0.2]) == "no difference"
