"""Bit-exact equalities this implementation promises for itself, on every backend.

The conformance suite (property_tests/) allows another implementation to round
differently here; pgpo_core does not: chunking splits the rows of one elementwise
computation, and every response is computed from its own row alone, so chunked and
unchunked KL are identical and permuting the batch permutes every output bit for bit.
Results keep float64 for float64 inputs.

One measured exception: XLA on a GPU compiles the vocabulary reduction per array shape,
and a (1, V) chunk can be summed in another order than the (B*T, V) whole (seen on an
H200: chunk_size=1 differed in the 15th digit, 3.9e-16 absolute). There the chunked KL is
checked to a few float64 ulps instead; everywhere else (numpy, array-api-strict, torch on
the CPU and on CUDA, jax on the CPU) bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest


def _problem(seed=7, rows=4, cols=6, vocab=9):
    rng = np.random.default_rng(seed)
    visual = rng.normal(0.0, 3.0, size=(rows, cols, vocab))
    blind = visual + rng.normal(0.0, 1.0, size=(rows, cols, vocab))
    mask = rng.random((rows, cols)) < 0.7
    mask[0] = False
    mask[1] = True
    return visual, blind, mask


@pytest.mark.parametrize("chunk_size", [1, 5, 100])
def test_chunked_kl_is_bit_identical(backend, pgpo, chunk_size):
    visual, blind, mask = _problem()
    args = (backend.asarray(visual), backend.asarray(blind), backend.asarray(mask))
    whole = backend.to_numpy(pgpo.token_visual_dependency(*args, temperature=0.7))
    chunked = backend.to_numpy(pgpo.token_visual_dependency(*args, temperature=0.7,
                                                            chunk_size=chunk_size))
    assert whole.dtype == np.float64
    if _xla_on_gpu(backend):
        eps = np.finfo(np.float64).eps  # terms are O(1): a few ulps of 1, absolute
        np.testing.assert_allclose(chunked, whole, rtol=16 * eps, atol=16 * eps)
    else:
        np.testing.assert_array_equal(chunked, whole)


def _xla_on_gpu(backend) -> bool:
    if backend.library != "jax":
        return False
    import jax

    return jax.default_backend() == "gpu"


def test_permuting_the_batch_permutes_outputs_bit_for_bit(backend, pgpo):
    visual, blind, mask = _problem()
    perm = np.array([2, 0, 3, 1])
    a = backend.asarray

    def run(v, b, m, adv):
        kl = pgpo.token_visual_dependency(a(v), a(b), a(m))
        shaped = pgpo.reshape_advantages(a(adv), kl, a(m), threshold="quantile",
                                         low_weight_floor=0.1)
        return backend.to_numpy(kl), backend.to_numpy(shaped)

    adv = np.array([1.0, -0.5, 0.25, 2.0])
    kl, shaped = run(visual, blind, mask, adv)
    kl_p, shaped_p = run(visual[perm], blind[perm], mask[perm], adv[perm])
    assert kl.dtype == np.float64 and shaped.dtype == np.float64
    np.testing.assert_array_equal(kl_p, kl[perm])
    np.testing.assert_array_equal(shaped_p, shaped[perm])
