"""torch.compile: the core traces without graph breaks and gives eager results.

Value checks (NaN/inf, sign) need a host read; under torch.compile they are skipped,
as under jax.jit, instead of breaking the graph.
"""

import functools
import warnings

import numpy as np
import pytest
import torch


def _inputs():
    g = torch.Generator().manual_seed(0)
    lv = torch.randn(2, 5, 11, generator=g)
    lb = torch.randn(2, 5, 11, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    return lv, lb, mask


def _pipeline(pgpo, lv, lb, mask):
    dep = pgpo.token_visual_dependency(lv, lb, mask, chunk_size=4)
    adv = pgpo.group_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0])).advantages
    shaped = pgpo.reshape_advantages(adv, dep, mask, threshold="quantile")
    logp = torch.log_softmax(lv, dim=-1)[..., 0]
    loss, _ = pgpo.policy_loss(logp, logp.detach() - 0.1, shaped, mask)
    return dep, shaped, loss


@pytest.mark.filterwarnings("ignore")
def test_pipeline_has_no_graph_breaks_and_matches_eager(pgpo):
    pipeline = functools.partial(_pipeline, pgpo)
    lv, lb, mask = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explained = torch._dynamo.explain(pipeline)(lv, lb, mask)
        compiled = torch.compile(pipeline, backend="eager", fullgraph=True)(lv, lb, mask)
    assert explained.graph_break_count == 0
    for got, want in zip(compiled, pipeline(lv, lb, mask)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def test_eager_calls_still_check_values(pgpo):
    lv, lb, mask = _inputs()
    lv[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits_visual"):
        pgpo.token_visual_dependency(lv, lb, mask)


@pytest.mark.filterwarnings("ignore")
def test_vppo_has_no_graph_breaks_and_matches_eager(pgpo):
    dep = torch.tensor([[0.2, 0.8, 0.0, 0.4, 0.6], [0.3, 0.0, 0.3, 0.3, 0.1]])
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    fn = functools.partial(pgpo.vppo_advantages, top_p=0.4, scale_min=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explained = torch._dynamo.explain(fn)(adv, dep, mask)
        compiled = torch.compile(fn, backend="eager", fullgraph=True)(adv, dep, mask)
    assert explained.graph_break_count == 0
    eager = fn(adv, dep, mask)
    np.testing.assert_allclose(compiled.advantages.numpy(), eager.advantages.numpy(),
                               rtol=1e-6, atol=1e-7)
    assert torch.equal(compiled.token_mask, eager.token_mask)
