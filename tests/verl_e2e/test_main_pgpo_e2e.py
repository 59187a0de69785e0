"""``python -m pgpo_verl.main_pgpo`` trains inside verl's real Ray loop on CPU.

Four runs of the tiny Qwen2.5-VL on the colour task (``make_assets.py``), each a real
``RayPPOTrainer.fit`` with a vLLM server, FSDP2 actor workers and verl's file logger:

- ``pgpo``: PGPO (τ 0.4, β 2, exact dependency), 3 steps, a checkpoint at step 2, the
  advantages traced on their way to the actor (``verl_e2e_trace.py``);
- ``resumed``: the same run resumed from its step-2 checkpoint, step 3 only;
- ``identity``: PGPO with τ = 0, β = 0 (every weight exactly 1), 3 steps;
- ``stock``: verl's own ``main_ppo`` (GRPO), 3 steps, same seed;
- ``v1``: PGPO in verl's v1 loop (``trainer.use_v1=true``, ``PGPOTrainerSync``), 3 steps,
  the reshaping traced;
- ``vppo``: ``pgpo.algorithm=vppo`` with VPPO's recipe (k3 clamped at 10, against the
  images with each patch blacked out with probability 0.5), 2 steps, traced.

What is asserted is in each test's docstring.
"""

from __future__ import annotations

import pytest
import torch

import pgpo_core
from make_assets import main as make_assets
from verl_e2e_run import run

pytestmark = pytest.mark.slow

STEPS = 3
PGPO_KEYS = ("pgpo/dependency_mean", "pgpo/frac_above_tau", "timing_s/pgpo_blind_pass")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assets")
    make_assets(str(folder))
    return folder


@pytest.fixture(scope="module")
def pgpo(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("pgpo")
    rows = run("pgpo_verl.main_pgpo", assets, out, "trainer.save_freq=2", trace=True,
               steps=STEPS)
    return out, rows


def _steps(rows):
    return {row["step"]: row["data"] for row in rows}


def _trace(folder, kind):
    files = sorted(folder.glob(f"{kind}_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    return [torch.load(f, weights_only=False) for f in files]


def _check_step_metrics(rows, loop):
    """Each of the 3 steps logs PGPO's metrics through verl's logger, with rewards that are
    non-zero and differ within the batch (so GRPO's advantages carry signal)."""
    steps = _steps(rows)
    assert sorted(steps) == list(range(1, STEPS + 1))
    for step, data in steps.items():
        for key in PGPO_KEYS:
            assert key in data, f"{loop} step {step}: no {key}"
        assert data["timing_s/pgpo_blind_pass"] > 0
        assert 0 < data["pgpo/frac_above_tau"] < 1
        assert data["critic/score/max"] > data["critic/score/min"] >= 0
        assert data["critic/score/max"] > 0


def test_every_step_logs_pgpo_metrics(pgpo):
    """:func:`_check_step_metrics` in the legacy loop."""
    _check_step_metrics(pgpo[1], "legacy")


def _check_reshape(rec, k):
    """One step's reshaping: ``A~ = A * w~`` with ``w~`` as ``pgpo_core.token_weights``
    computes it from the dependency (τ 0.4, β 2), each response's mass conserved, verl's
    advantages GRPO's (one value per response), and tokens both boosted and suppressed."""
    mask = rec["mask"].bool()
    assert rec["kwargs"]["tau"] == 0.4 and rec["kwargs"]["beta"] == 2.0
    advantages, dependency = rec["advantages"].double(), rec["dependency"].double()
    assert (dependency[~mask] == 0).all() and (dependency >= 0).all()
    # GRPO: one advantage per response, repeated over its tokens.
    per_response = advantages.masked_fill(~mask, float("nan"))
    spread = per_response.nanquantile(1.0, 1) - per_response.nanquantile(0.0, 1)
    assert float(spread.max()) == 0.0
    assert advantages[mask].abs().max() > 0
    # The weights exactly as pgpo_core computes them from the logged dependency, in the
    # dtype the trainer used (float32): bit for bit.
    weights = pgpo_core.token_weights(rec["dependency"], mask, **rec["kwargs"])
    assert torch.equal(rec["out"], rec["advantages"] * weights), f"step {k}"
    assert torch.allclose((rec["out"].double() * mask).sum(1), (advantages * mask).sum(1),
                          rtol=1e-5, atol=1e-6), f"step {k}: mass not conserved"
    boosted = (weights > 1) & mask
    assert boosted.any() and (weights[mask] < 1).any(), f"step {k}: nothing reshaped"


def test_advantages_reaching_the_actor_are_pgpo(pgpo):
    """At every step the trainer sends the actor exactly the advantages PGPO's reshaping
    made (:func:`_check_reshape`)."""
    out, _ = pgpo
    reshapes, updates = _trace(out / "trace", "reshape"), _trace(out / "trace", "update")
    assert len(reshapes) == len(updates) == STEPS
    for k, (rec, upd) in enumerate(zip(reshapes, updates), start=1):
        assert upd["step"] == k
        assert torch.equal(upd["response_mask"].bool(), rec["mask"].bool())
        assert torch.equal(upd["advantages"], rec["out"]), f"step {k}: not what PGPO made"
        _check_reshape(rec, k)


#: Step metrics that depend on the rollouts, the advantages and the update.
UPDATE_KEYS = ("critic/score/mean", "critic/advantages/mean", "critic/advantages/max",
               "actor/pg_loss", "actor/grad_norm", "actor/pg_clipfrac", "actor/ppo_kl")


@pytest.fixture(scope="module")
def resumed(pgpo, assets, tmp_path_factory):
    """The ``pgpo`` run resumed from its step-2 checkpoint (a copy: the original stays)."""
    import shutil

    source, _ = pgpo
    out = tmp_path_factory.mktemp("resumed")
    shutil.copytree(source / "checkpoints", out / "checkpoints")
    (out / "checkpoints" / "global_step_3").exists() and shutil.rmtree(
        out / "checkpoints" / "global_step_3")
    (out / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("2")
    return run("pgpo_verl.main_pgpo", assets, out, "trainer.save_freq=2",
               "trainer.resume_mode=auto", steps=STEPS)


def test_resume_from_step_2_equals_the_uninterrupted_step_3(pgpo, resumed):
    """A verl checkpoint saved at step 2 resumes, and its step 3 equals the uninterrupted
    run's: same rollouts and rewards, same PGPO metrics, same loss and gradient norm."""
    _, rows = pgpo
    full, again = _steps(rows), _steps(resumed)
    assert sorted(again) == [3], "the resumed run should do step 3 only"
    for key in UPDATE_KEYS + ("pgpo/dependency_mean", "pgpo/frac_above_tau"):
        assert again[3][key] == full[3][key], (key, again[3][key], full[3][key])


@pytest.fixture(scope="module")
def identity(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("identity")
    return run("pgpo_verl.main_pgpo", assets, out, "pgpo.tau=0", "pgpo.beta=0", steps=STEPS)


@pytest.fixture(scope="module")
def stock(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("stock")
    return run("verl.trainer.main_ppo", assets, out, steps=STEPS)


def test_tau0_beta0_is_stock_grpo_bit_for_bit(identity, stock):
    """With τ = 0, β = 0 every PGPO weight is exactly 1: each step's rewards, advantages,
    loss and gradient norm equal stock ``main_ppo`` GRPO's on the same seed, bit for bit
    (the blind pass runs, and changes nothing)."""
    pgpo_steps, stock_steps = _steps(identity), _steps(stock)
    assert sorted(pgpo_steps) == sorted(stock_steps) == list(range(1, STEPS + 1))
    for step in pgpo_steps:
        assert "pgpo/dependency_mean" in pgpo_steps[step]
        assert not any(key.startswith("pgpo/") for key in stock_steps[step])
        for key in UPDATE_KEYS:
            assert pgpo_steps[step][key] == stock_steps[step][key], (step, key)


@pytest.fixture(scope="module")
def v1(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("v1")
    return out, run("pgpo_verl.main_pgpo", assets, out, loop="v1", trace=True, steps=STEPS)


def test_v1_loop_logs_pgpo_metrics_and_reshapes_every_step(v1):
    """verl's v1 loop (``trainer.use_v1=true``) runs ``PGPOTrainerSync``: every step logs
    PGPO's metrics and reshapes verl's GRPO advantages as ``pgpo_core`` computes them."""
    out, rows = v1
    _check_step_metrics(rows, "v1")
    reshapes = _trace(out / "trace", "reshape")
    assert len(reshapes) == STEPS
    for k, rec in enumerate(reshapes, start=1):
        _check_reshape(rec, k)


@pytest.fixture(scope="module")
def vppo(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("vppo")
    rows = run("pgpo_verl.main_pgpo", assets, out, "pgpo.algorithm=vppo",
               "pgpo.estimator=k3", "pgpo.estimate_clip=10", "pgpo.blind.mode=blacken",
               trace=True, steps=2)
    return out, rows


def test_vppo_in_the_real_loop_logs_vppo_metrics_and_sends_vppos_advantages(vppo):
    """``pgpo.algorithm=vppo``: every step logs ``vppo/*`` (not ``pgpo/*``, not nothing),
    the blackened pass changed about half of the images' patches, and the actor receives
    ``pgpo_core.vppo_advantages`` of verl's GRPO advantages: each response keeps
    ``ceil(0.4 |o|)`` tokens, the others get 0, the factors average 1."""
    out, rows = vppo
    steps = _steps(rows)
    assert sorted(steps) == [1, 2]
    for step, data in steps.items():
        for key in ("vppo/kept_frac", "vppo/kept_dependency_frac", "vppo/scale_max",
                    "vppo/blackened_patch_frac", "timing_s/pgpo_blind_pass"):
            assert key in data, f"vppo step {step}: no {key}"
        assert not any(key.startswith("pgpo/") for key in data)
        assert 0.4 <= data["vppo/kept_frac"] < 0.7
        assert 0.3 < data["vppo/blackened_patch_frac"] < 0.7
    records, updates = _trace(out / "trace", "vppo"), _trace(out / "trace", "update")
    assert len(records) == len(updates) == 2
    assert not list((out / "trace").glob("reshape_*.pt"))  # PGPO's reshaping never ran
    for k, (rec, upd) in enumerate(zip(records, updates), start=1):
        mask = rec["mask"].bool()
        assert torch.equal(upd["advantages"], rec["out"].to(upd["advantages"].dtype)), k
        dependency = rec["dependency"]
        assert float(dependency.max()) <= 10.0 and float(dependency[mask].max()) > 0
        expected = pgpo_core.vppo_advantages(rec["advantages"], dependency, mask,
                                             **rec["kwargs"])
        assert torch.equal(rec["out"], expected.advantages), k
        lengths = mask.sum(-1)
        assert torch.equal(rec["token_mask"].sum(-1), torch.ceil(0.4 * lengths - 1e-6).long())
        filtered = mask & ~rec["token_mask"]
        assert filtered.any() and (rec["out"][filtered] == 0).all(), k
        assert float(rec["scale"][lengths > 0].mean()) == pytest.approx(1.0, abs=1e-5)
