"""End-to-end runs of the reference trainer on the tiny Qwen2.5-VL (CPU, a few steps)."""

import dataclasses
import json
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import tiny_args, varied_rewards  # noqa: E402

from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.config import ConfigError, load_config  # noqa: E402
from reference_impl.data.chains import ChainCountTask  # noqa: E402
from reference_impl.data.examples import ExampleSampler  # noqa: E402
from reference_impl.policy.distributed import DistEnv  # noqa: E402
from reference_impl.train import main  # noqa: E402

pytestmark = pytest.mark.slow

TRAIN_KEYS = ("reward", "accuracy", "format", "response_length", "clip_frac", "entropy",
              "grad_norm", "loss", "dependency_mean", "frac_above_tau", "weight_max",
              "weight_mean", "kept_groups", "informative_groups_frac", "lr")


def _rows(out, kind):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def test_two_pgpo_steps_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    summary = main(tiny_args(out, "train.total_steps=2", "algo.dynamic_sampling=false"))
    assert summary["steps"] == 2 and summary["stopped_by_signal"] is False
    train = _rows(out, "train")
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        for key in TRAIN_KEYS:
            assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r)
        assert r["updated"] == 1.0 and r["nonfinite_skipped"] == 0.0
        assert 1.0 <= r["response_length"] <= 6.0  # rollout.max_response_length
        assert 0.0 <= r["clip_frac"] <= 1.0
        # The image changes the untrained model's predictions: S > 0 somewhere.
        assert r["dependency_max"] > 0.0
        # Eq. 7 (mass conservation) holds for the weights that reached the loss.
        assert r["weight_mean"] == pytest.approx(1.0, abs=1e-5)
        assert r["lr"] == pytest.approx(1e-4)
    final = _rows(out, "eval")[-1]
    assert final["phase"] == "final" and final["responses"] == 2.0  # 2 prompts x k=1
    # Report files.
    assert (out / "learning_curves.png").stat().st_size > 1000
    page = (out / "samples.html").read_text()
    assert page.count('<div class="card">') == 2 and 'title="S=' in page
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["steps"] == 2
    # The numerical environment, so that two runs' paths are compared only where it agrees.
    assert saved["numerics"]["torch_num_threads"] == torch.get_num_threads()
    assert saved["numerics"]["torch"] == torch.__version__


def _trainer(tmp_path, *extra):
    cfg = load_config(tiny_args(tmp_path / "t", "train.total_steps=5", *extra))
    return trainer_mod.Trainer(cfg, DistEnv())


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_loss_skips_the_update_and_stops_after_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    real = rl_step_mod.response_logprobs

    def nan_when_training(model, batch, **kw):
        logp, ent = real(model, batch, **kw)
        return (logp * float("nan") if torch.is_grad_enabled() else logp), ent

    monkeypatch.setattr(rl_step_mod, "response_logprobs", nan_when_training)
    t = _trainer(tmp_path, "algo.dynamic_sampling=false", "optim.max_nonfinite_steps=2")
    before = _params(t)
    m = t.rl_step()
    assert m["updated"] == 1.0 and m["nonfinite_skipped"] == 1.0
    assert _same(before, _params(t))  # no optimiser step: weights bit-identical
    assert t.run.consecutive_nonfinite == 2  # two mini-batches, both skipped
    with pytest.raises(FloatingPointError, match="max_nonfinite_steps"):
        t.rl_step()


def test_dynamic_sampling_drops_all_equal_groups(tmp_path):
    # The untrained model never answers in format: every reward is 0, every group is
    # all-equal, so dynamic sampling keeps nothing after max_sampling_rounds rounds.
    t = _trainer(tmp_path, "algo.max_sampling_rounds=2")
    before = _params(t)
    m = t.rl_step()
    assert m["reward"] == 0.0 and m["kept_groups"] == 0.0
    assert m["informative_groups_frac"] == 0.0
    assert m["sampling_rounds"] == 2.0 and m["updated"] == 0.0
    assert _same(before, _params(t))
    assert t.train_data.position == 2 * 2  # two rounds of prompts_per_step prompts


def test_micro_batching_does_not_change_the_gradient(tmp_path, monkeypatch):
    """Gradient accumulation over micro-batches divides by the whole mini-batch's token
    count, so the gradient reaching AdamW with micro_batch_size=1 equals the one with
    micro_batch_size=4 (one mini-batch of 2 groups x 2 responses). DAPO, so that the
    comparison is not blurred by float noise in tiny dependencies."""
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    grads = []
    for micro in (4, 1):
        t = _trainer(tmp_path, "algo.name=dapo", "algo.dynamic_sampling=false",
                     "optim.mini_batch_size=2",
                     f"optim.micro_batch_size={micro}", "optim.grad_clip=none")
        seen = []
        real_step = t.optimizer.step

        def recording_step(*a, _real=real_step, _seen=seen, _t=t, **kw):
            _seen.append([p.grad.clone() for p in _t.policy.parameters() if p.grad is not None])
            return _real(*a, **kw)

        t.optimizer.step = recording_step
        t.rl_step()
        assert len(seen) == 1  # one mini-batch: one optimiser step
        grads.append(seen[0])
    assert len(grads[0]) == len(grads[1]) > 0
    assert any(g.abs().max() > 0 for g in grads[0])
    for a, b in zip(*grads):
        # Only float32 summation order differs; a wrong normaliser would be off by O(1).
        assert float((a - b).norm()) <= 1e-5 * float(a.norm()) + 1e-12


def test_prompts_that_fit_is_the_text_length_bound_inclusive_of_the_limit():
    """A prompt fits at exactly its text length (the image as one placeholder) and not one
    token below; the encoded prompt, with the image's tokens, is never shorter."""
    from pgpo_torch.tiny import build_tiny_processor
    from reference_impl.rollout.batch import encode_prompts, prompt_text_lengths, prompts_that_fit

    processor = build_tiny_processor()
    examples = [ChainCountTask(0)[i] for i in range(3)]
    questions = [e.prompt for e in examples] + ["word " * 300]
    lengths = prompt_text_lengths(processor, questions)
    assert lengths[-1] > 300 > max(lengths[:-1])
    for q, n in zip(questions, lengths):
        assert prompts_that_fit(processor, [q], n) == [True]
        assert prompts_that_fit(processor, [q], n - 1) == [False]
    assert prompts_that_fit(processor, questions, 300) == [True, True, True, False]
    encoded = encode_prompts(processor, [e.prompt for e in examples], [e.image for e in examples],
                             system_prompt=None, device="cpu")
    assert all(int(m.sum()) >= n for m, n in zip(encoded["attention_mask"], lengths))


def test_prompts_longer_than_the_limit_are_skipped_and_counted(tmp_path, monkeypatch):
    # Every prompt (about a hundred tokens with its image) exceeds 8 tokens: both prompts
    # of the step are counted after sampling and nothing is trained on. The text-only
    # check before sampling is switched off here (as if only the image made them too
    # long); the next tests cover it.
    monkeypatch.setattr(rl_step_mod, "prompts_that_fit", lambda processor, qs, limit: [True] * len(qs))
    monkeypatch.setattr(trainer_mod, "prompts_that_fit", lambda processor, qs, limit: [True] * len(qs))
    t = _trainer(tmp_path, "algo.dynamic_sampling=false", "rollout.max_prompt_length=8")
    before = _params(t)
    m = t.rl_step()
    assert m["prompts_too_long"] == 2.0 and m["kept_groups"] == 0.0 and m["updated"] == 0.0
    assert _same(before, _params(t))


class _Listed(ExampleSampler):
    """The given examples in order (no shuffle)."""

    def __init__(self, examples):
        self._examples, self._seed, self._shuffle = list(examples), 0, False

    def __len__(self):
        return len(self._examples)

    def __getitem__(self, index):
        return self._examples[index]


def _with_long_questions(long_at):
    """``t``'s first four synthetic training examples, those at ``long_at`` given a
    400-word question (over the default rollout.max_prompt_length=256 by its text alone)."""
    examples = [ChainCountTask(0)[i] for i in range(4)]
    long = " ".join(["word"] * 400)
    return _Listed(dataclasses.replace(e, question=long) if i in long_at else e
                   for i, e in enumerate(examples))


def test_an_overlong_prompt_is_skipped_before_it_is_sampled(tmp_path, monkeypatch):
    # Found by the fault campaign: a 20,000-word question was sampled (the batch padded to
    # it) before being skipped, and the run was OOM-killed. Now it is replaced by the next
    # draw before any rollout, counted, and the step trains on two ordinary prompts.
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    t = _trainer(tmp_path, "algo.dynamic_sampling=false")
    t.train_data = _with_long_questions(long_at={0})
    sampled = []
    real = t.engine.generate
    t.engine.generate = lambda prompts, *a, **k: (sampled.extend(prompts), real(prompts, *a, **k))[1]
    with pytest.warns(RuntimeWarning, match=r"longer than rollout\.max_prompt_length=256 "
                                            r"tokens are skipped before sampling"):
        m = t.rl_step()
    assert sampled == [e.prompt for e in (t.train_data[1], t.train_data[2])]
    assert m["prompts_too_long"] == 1.0 and m["kept_groups"] == 2.0 and m["updated"] == 1.0
    # The warm-up draws through the same filter.
    t.train_data = _with_long_questions(long_at={1, 2})
    assert [e.prompt for e in t._next_examples(2)] == [t.train_data[i].prompt for i in (0, 3)]


def test_overlong_heldout_prompts_are_left_out_of_evaluation(tmp_path):
    t = _trainer(tmp_path, "algo.dynamic_sampling=false")
    assert t._heldout_that_fits(t.heldout) is t.heldout  # the synthetic task: all fit
    mixed = _with_long_questions(long_at={1})
    with pytest.warns(RuntimeWarning, match=r"^1 of 4 held-out prompts are longer than "
                                            r"rollout\.max_prompt_length=256 tokens"):
        kept = t._heldout_that_fits(mixed)
    assert [e.prompt for e in kept] == [mixed[i].prompt for i in (0, 2, 3)]
    with pytest.raises(ConfigError, match=r"^rollout\.max_prompt_length: all 4 held-out"):
        t._heldout_that_fits(_with_long_questions(long_at={0, 1, 2, 3}))


def test_a_source_of_only_overlong_prompts_stops_naming_the_limit(tmp_path):
    t = _trainer(tmp_path, "algo.dynamic_sampling=false")
    t.train_data = _with_long_questions(long_at={0, 1, 2, 3})
    with pytest.raises(ConfigError, match=r"^rollout\.max_prompt_length: 32 of the last 32 "
                                          r"prompts drawn from data\.source are longer than "
                                          r"256 tokens"):
        t.rl_step()
