"""Hypothesis strategies, padding layouts, float64 error bounds and the spec's latitude
for the conformance suite.

Latitude (what a conforming implementation may do differently, see the README):

- result dtype: a real floating dtype of at least float32 and at least the inputs'
  precision (float64 in gives float64 out; float32 in may give float32 or float64);
- bad input: ``TypeError`` or ``ValueError`` whose message names the argument somewhere;
- values: equal to the spec's to a tolerance derived from floating-point rounding;
  bit-exact only where the spec promises it (0 on padding; ``tau = 0, beta = 0``
  gives weights exactly 1; an all-equal group gets advantages exactly 0; ties in S
  get equal weights);
- extra keys in the metrics and diagnostics dicts.

Arrays are drawn as numpy float64 (the reference precision) and handed to each
backend through the ``backend`` fixture's converters.

Tolerances. ``U`` is float64's unit roundoff (2**-53). A sum of ``n`` non-negative
terms computed in floating point is within ``(n - 1) * U * sum`` of the exact sum
(Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., Sec. 4.2), whatever
the summation order; every bound below is that fact plus one rounding per elementwise
operation, with a factor of 2 for the second-order terms. They scale with the
problem size and the magnitudes involved, so they are tight: a wrong formula misses
them by many orders of magnitude.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

U = float(np.finfo(np.float64).eps) / 2  # unit roundoff of float64


def assert_float_result(x, input_dtype="float64"):
    """The dtype latitude: real floating, at least float32 and at least ``input_dtype``."""
    x = np.asarray(x)
    assert np.issubdtype(x.dtype, np.floating), x.dtype
    assert x.dtype.itemsize >= max(4, np.dtype(input_dtype).itemsize), (x.dtype, input_dtype)


MAX_ROWS = 4
MAX_LEN = 8

# ------------------------------------------------------------------ scalar strategies

#: Dependencies S >= 0: ordinary values plus the extremes (0, subnormal, huge).
dependency_values = st.one_of(
    st.floats(min_value=0.0, max_value=1e3),
    st.floats(min_value=0.0, max_value=1e30),
    st.sampled_from([0.0, 5e-324, 1e-310, 1e-300, 1e-8, 1.0, 1e30, 1e300]),
)

#: Anything at all, for the values that sit under padding.
garbage_values = st.floats(allow_nan=True, allow_infinity=True)

# Advantages of magnitude >= 1e-100 (or 0): XLA on CPU flushes subnormal results to zero,
# so A * w landing below 2.2e-308 would be 0 on jax only; that is the platform's
# arithmetic, not the spec. (Subnormal *dependencies* stay in: every property holds for
# them on every backend.)
advantage_values = st.floats(min_value=-1e6, max_value=1e6).map(
    lambda a: a if abs(a) >= 1e-100 else 0.0)

eps_values = st.one_of(st.sampled_from([1e-6, 1e-3, 1e-12, 1e-300]),
                       st.floats(min_value=1e-300, max_value=1e-2))


def weight_kwargs(*, conserve_mass=None, tau=None, beta=None):
    """The hyper-parameters of token_weights / reshape_advantages over their whole domain."""
    return st.fixed_dictionaries({
        "tau": st.floats(0.0, 1.0) if tau is None else st.just(tau),
        "beta": st.floats(0.0, 10.0) if beta is None else st.just(beta),
        "eps": eps_values,
        "threshold": st.sampled_from(["fixed", "quantile"]),
        "low_weight_floor": st.one_of(st.just(0.0), st.floats(0.0, 1.0)),
        "conserve_mass": st.booleans() if conserve_mass is None else st.just(conserve_mass),
    })


# ---------------------------------------------------------------------- ragged layouts


def ragged(values, *, min_rows=1, max_rows=MAX_ROWS, min_len=0, max_len=MAX_LEN):
    """A list of responses, each a list of per-token values (lengths may differ, 0 included)."""
    return st.lists(st.lists(values, min_size=min_len, max_size=max_len),
                    min_size=min_rows, max_size=max_rows)


def pack_left(rows, *, pad=0.0, width=MAX_LEN, height=MAX_ROWS):
    """Right-padded ``(height, width)`` values and mask from a list of rows of scalars or
    vectors; rows past ``len(rows)`` are all padding.

    The shape is fixed on purpose: jax compiles every primitive once per shape, so a
    fixed shape keeps the suite fast, and padding is covered by its own properties.
    """
    tail = next((np.shape(r[0]) for r in rows if len(r)), ())
    values = np.full((height, width) + tail, pad, dtype=np.float64)
    mask = np.zeros((height, width), dtype=bool)
    for i, r in enumerate(rows):
        if len(r):
            values[i, : len(r)] = np.asarray(r, dtype=np.float64)
        mask[i, : len(r)] = True
    return values, mask


MAX_EXTRA = 4


@st.composite
def scattered_layout(draw, lengths, *, width=MAX_LEN + MAX_EXTRA):
    """Positions of real tokens inside rows of ``width`` columns, padding anywhere (start,
    middle, end). Returns ``(width, positions)``, ``positions[i]`` the sorted columns
    of row ``i``'s real tokens."""
    positions = []
    for n in lengths:
        cols = draw(st.permutations(range(width)))[:n]
        positions.append(np.sort(np.asarray(cols, dtype=np.int64)))
    return width, positions


def scatter(rows, width, positions, garbage, *, tail=(), height=MAX_ROWS):
    """Rows placed at ``positions`` in a ``(height, width) + tail`` array whose other cells
    hold ``garbage`` (an array broadcastable to it); returns ``(values, mask)``."""
    values = np.array(np.broadcast_to(garbage, (height, width) + tail), dtype=np.float64)
    mask = np.zeros((height, width), dtype=bool)
    for i, (r, cols) in enumerate(zip(rows, positions)):
        if len(r):
            values[i, cols] = np.asarray(r, dtype=np.float64)
        mask[i, cols] = True
    return values, mask


def real_tokens(values, mask):
    """Per row, the values at real tokens, in order (a list of 1-D arrays)."""
    return [np.asarray(v)[m] for v, m in zip(values, mask)]


# ------------------------------------------------------------------- logits strategies

VOCAB = st.sampled_from([1, 2, 5])  # a few sizes: V = 1 (KL = 0 always) included
LOGIT_ROWS = 3
LOGIT_LEN = 5


@st.composite
def logits_pairs(draw, *, magnitude=30.0, min_len=0):
    """Ragged rows of (visual, blind) logit vectors of one vocabulary size V, packed into
    ``(LOGIT_ROWS, LOGIT_LEN, V)`` by :func:`pack_logits`."""
    vocab = draw(VOCAB)
    vec = st.lists(st.floats(-magnitude, magnitude), min_size=vocab, max_size=vocab)
    pair = st.tuples(vec, vec)
    rows = draw(ragged(pair, max_rows=LOGIT_ROWS, min_len=min_len, max_len=LOGIT_LEN))
    visual = [[p[0] for p in r] for r in rows]
    blind = [[p[1] for p in r] for r in rows]
    return vocab, visual, blind


def pack_logits(vocab, rows):
    """``(LOGIT_ROWS, LOGIT_LEN, V)`` logits (0 under padding) and their mask."""
    values = np.zeros((LOGIT_ROWS, LOGIT_LEN, vocab))
    mask = np.zeros((LOGIT_ROWS, LOGIT_LEN), dtype=bool)
    for i, r in enumerate(rows):
        if len(r):
            values[i, : len(r)] = np.asarray(r, dtype=np.float64)
        mask[i, : len(r)] = True
    return values, mask


def reference_kl(visual, blind, temperature=1.0):
    """Independent float64 KL(softmax(visual) || softmax(blind)) along the last axis."""
    a = np.asarray(visual, dtype=np.float64) / temperature
    b = np.asarray(blind, dtype=np.float64) / temperature
    la = a - np.logaddexp.reduce(a, axis=-1, keepdims=True)
    lb = b - np.logaddexp.reduce(b, axis=-1, keepdims=True)
    return np.sum(np.exp(la) * (la - lb), axis=-1)


def kl_tolerance(visual, blind, temperature=1.0):
    """Bound on the float64 rounding error of an exact-KL evaluation, per token.

    Each log-probability ``z - max z - log sum exp`` is formed with a few roundings
    of numbers of magnitude at most ``M = 2 max|z| / temperature + log V``; the KL
    adds ``V`` products ``p * (log p - log q)`` with ``|log p - log q| <= 2 M``.
    So the error is at most ``c * U * V * M`` with a small constant ``c``; 32 covers
    two independent evaluations of it.
    """
    v = np.asarray(visual, dtype=np.float64)
    vocab = v.shape[-1]
    magnitude = (2 * max(np.max(np.abs(v), initial=0.0),
                         np.max(np.abs(np.asarray(blind, dtype=np.float64)), initial=0.0))
                 / temperature + np.log(vocab) + 1.0)
    return 32 * U * vocab * magnitude


# ---------------------------------------------------------- reference weights (Eqs. 4-7)


def reference_weights(s, *, tau, beta, eps, threshold, low_weight_floor, conserve_mass):
    """PGPO weights of one response, straight from the paper's equations, in float64.

    The fallbacks are the project's documented choices: constant S (one token
    included) or raw weights summing to 0 give 1 everywhere.
    """
    s = np.asarray(s, dtype=np.float64)
    n = s.size
    if n == 0:
        return s
    log_s = np.log1p(s)                                                     # Eq. 4
    spread = log_s.max() - log_s.min()
    if not spread > 0:
        return np.ones(n)
    importance = (log_s - log_s.min()) / (spread + eps)                     # Eq. 5
    thr = tau if threshold == "fixed" else np.quantile(importance, tau)     # variant
    w = np.where(importance < thr, importance / (thr + eps),                # Eq. 6
                 1 + beta * (importance - thr) / (1 - thr + eps))
    w = np.maximum(w, low_weight_floor)
    if not w.sum() > 0:
        return np.ones(n)
    return w * n / w.sum() if conserve_mass else w                          # Eq. 7
