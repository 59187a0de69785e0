"""weight_diagnostics against the paper's equations evaluated independently.

Every statistic is over response tokens only (padding anywhere, holding anything, never
enters), and follows the threshold mode: with ``threshold="quantile"``, ``frac_above_tau``
counts the tokens at or above each response's own quantile threshold, the same threshold
the weights use.

Inputs come from the grid of ``test_backend_agreement`` (S = k / 4, thresholds whose
quantile positions are exact in binary), so the weights are well conditioned and every
comparison with the threshold is decided by more than rounding.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pgpo_strategies import (MAX_ROWS, U, garbage_values, ragged, reference_weights, scatter,
                             scattered_layout)

KEYS = ("dependency_mean", "dependency_max", "frac_above_tau", "weight_mean", "weight_max",
        "weight_min", "boosted_frac", "boosted_tokens", "effective_token_frac")

grid_dependency = st.integers(0, 40).map(lambda k: k / 4)
grid_kwargs = st.fixed_dictionaries({
    "tau": st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    "beta": st.sampled_from([0.0, 0.5, 2.0]),
    "eps": st.sampled_from([1e-6, 1e-3]),
    "threshold": st.sampled_from(["fixed", "quantile"]),
    "low_weight_floor": st.sampled_from([0.0, 0.1]),
    "conserve_mass": st.booleans(),
})


def _importance_and_threshold(s, *, tau, eps, threshold):
    """Eqs. 4-5 and the threshold (fixed tau, or the tau-quantile of the response's I)."""
    log_s = np.log1p(np.asarray(s, dtype=np.float64))
    importance = (log_s - log_s.min()) / (log_s.max() - log_s.min() + eps)
    thr = tau if threshold == "fixed" else np.quantile(importance, tau)
    return importance, thr


def reference_diagnostics(rows, kwargs):
    deps, weights, above, ess = [], [], [], []
    for row in rows:
        if not len(row):
            continue
        w = reference_weights(row, **kwargs)
        importance, thr = _importance_and_threshold(row, tau=kwargs["tau"], eps=kwargs["eps"],
                                                    threshold=kwargs["threshold"])
        deps.append(np.asarray(row, dtype=np.float64))
        weights.append(w)
        above.append(importance >= thr)
        ess.append(np.sum(w) ** 2 / (len(row) * np.sum(w * w)) if np.sum(w * w) > 0 else 0.0)
    n_rows = max(len(weights), 1)
    dep = np.concatenate(deps) if deps else np.zeros(0)
    w = np.concatenate(weights) if weights else np.zeros(0)
    n = max(dep.size, 1)
    return {
        "dependency_mean": np.sum(dep) / n,
        "dependency_max": np.max(dep, initial=0.0),
        "frac_above_tau": np.sum(np.concatenate(above) if above else 0.0) / n,
        "weight_mean": np.sum(w) / n,
        "weight_max": np.max(w, initial=0.0) if w.size else 0.0,
        "weight_min": np.min(w, initial=np.inf) if w.size else 0.0,
        "boosted": (w, n, n_rows),
        "effective_token_frac": np.sum(ess) / n_rows,
    }


@st.composite
def _problems(draw):
    rows = draw(ragged(grid_dependency))
    width, positions = draw(scattered_layout([len(r) for r in rows]))
    garbage = np.asarray(draw(st.lists(garbage_values, min_size=MAX_ROWS * width,
                                       max_size=MAX_ROWS * width))).reshape(MAX_ROWS, width)
    return rows, width, positions, garbage


@given(problem=_problems(), kwargs=grid_kwargs)
def test_diagnostics_match_the_equations_and_ignore_padding(pgpo, backend, problem, kwargs):
    rows, width, positions, garbage = problem
    values, mask = scatter(rows, width, positions, garbage)
    out = pgpo.weight_diagnostics(backend.asarray(values), backend.asarray(mask), **kwargs)
    assert set(KEYS) <= set(out), sorted(out)  # extra keys are allowed
    got = {k: float(backend.to_numpy(out[k])) for k in KEYS}
    want = reference_diagnostics(rows, kwargs)
    n_tok = int(mask.sum())
    # Weights are well conditioned on the grid (see test_backend_agreement): 1e-9 relative.
    rtol = 1e-9
    for key in ("dependency_mean", "dependency_max", "weight_mean", "weight_max",
                "weight_min", "effective_token_frac"):
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=rtol, err_msg=key)
    np.testing.assert_allclose(got["frac_above_tau"], want["frac_above_tau"], rtol=4 * U,
                               atol=0, err_msg="frac_above_tau")
    # w~ > 1 is decided by rounding for weights within 1e-9 of 1 (a constant response
    # gets exactly 1, a mass-conserving one can land on 1 +- an ulp): either way counts.
    w, n, n_rows = want["boosted"]
    surely, maybe = np.sum(w > 1 + rtol), np.sum(w > 1 - rtol)
    assert surely / n - 4 * U <= got["boosted_frac"] <= maybe / n + 4 * U, got
    assert surely / n_rows - 4 * U <= got["boosted_tokens"] <= maybe / n_rows + 4 * U, got
    if n_tok == 0:
        assert all(v == 0.0 for v in got.values()), got
