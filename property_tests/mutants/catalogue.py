"""The mutation self-test's catalogue: copies of ``pgpo_core`` with one plausible mistake
each (mutants, which the conformance suite must reject) and copies that are correct but
organised differently (variants, which it must accept).

Every entry is a list of source edits: an exact snippet of a ``pgpo_core`` file and its
replacement. ``mutation.py`` applies them to a fresh copy and fails loudly if a snippet
no longer occurs exactly as often as stated (the catalogue then needs updating, never
silently skipping). ``quick`` marks the small subset the default ``pytest`` runs.
``backends``: numpy for most entries (the suite's values are backend-independent, and
one backend keeps the whole run affordable on a 2-core machine); numpy and torch where
the mistake shows only in a gradient or in float32/float64 handling on a second library.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Edit:
    file: str  # path inside pgpo_core/
    old: str
    new: str
    count: int = 1  # how many times ``old`` occurs; all of them are replaced


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "mutant" or "variant"
    covers: str  # the equation, function or property it touches
    what: str
    edits: tuple[Edit, ...]
    quick: bool = False
    backends: str = "numpy"  # where the suite runs against it; torch for gradients


def mutant(name, covers, what, *edits, quick=False, backends="numpy"):
    return Entry(name, "mutant", covers, what, tuple(edits), quick, backends)


def variant(name, covers, what, *edits, quick=False, backends="numpy"):
    return Entry(name, "variant", covers, what, tuple(edits), quick, backends)


D, W, A, L, G, V = ("dependency.py", "weights.py", "advantages.py", "loss.py",
                    "diagnostics.py", "validation.py")

MUTANTS = [
    # ------------------------------------------------------------------ Eq. 1, exact KL
    mutant("kl-reversed", "Eq. 1", "KL(pi_0 || pi_I) instead of KL(pi_I || pi_0)",
           Edit(D, "_kl_rows(xp, z_visual, z_blind, dtype, temperature)",
                "_kl_rows(xp, z_blind, z_visual, dtype, temperature)")),
    mutant("kl-no-clamp", "Eq. 1", "rounding can leave the KL at -1e-16 (no clamp at 0)",
           Edit(D, "xp.where(response_mask, xp.maximum(kl, zero), zero)",
                "xp.where(response_mask, kl, zero)")),
    mutant("kl-padding-kept", "Eq. 1", "padded tokens keep their (garbage) KL",
           Edit(D, "    return xp.where(response_mask, xp.maximum(kl, zero), zero)",
                "    return xp.maximum(kl, zero)")),
    mutant("kl-temperature-ignored", "Eq. 1", "temperature not applied",
           Edit(D, "    if temperature != 1.0:\n        z_visual", "    if False:\n        z_visual")),
    mutant("kl-temperature-multiplied", "Eq. 1", "logits multiplied by the temperature",
           Edit(D, "        z_visual = z_visual / temperature\n        z_blind = z_blind / temperature",
                "        z_visual = z_visual * temperature\n        z_blind = z_blind * temperature")),
    mutant("kl-chunk-temperature", "Eq. 1, chunking", "the chunked path forgets the temperature",
           Edit(D, "z_blind[i : min(i + chunk_size, n), ...], dtype, temperature)",
                "z_blind[i : min(i + chunk_size, n), ...], dtype, 1.0)")),
    mutant("kl-unstable", "Eq. 1", "softmax without the max shift (overflows for large logits)",
           Edit(D, "    a = z_visual - xp.max(z_visual, axis=-1, keepdims=True)",
                "    a = z_visual")),
    # ----------------------------------------------------------- Eq. 1, sampled estimators
    mutant("k3-inverted", "k3", "k3 with the ratio inverted: (1/r - 1) + log r",
           Edit(D, "xp.maximum(xp.expm1(log_r) - log_r, zero)",
                "xp.maximum(xp.expm1(-log_r) + log_r, zero)")),
    mutant("k1-sign", "k1", "k1 = log r instead of -log r",
           Edit(D, "        estimate = -log_r\n", "        estimate = log_r\n")),
    mutant("k2-no-half", "k2", "k2 = (log r)^2 without the 1/2",
           Edit(D, "estimate = 0.5 * log_r**2", "estimate = log_r**2")),
    mutant("estimate-clip-ignored", "estimators", "the clip argument is ignored",
           Edit(D, "    if clip is not None:\n        estimate = xp.minimum",
                "    if False:\n        estimate = xp.minimum")),
    # ------------------------------------------------------------------- Eqs. 4-7 weights
    mutant("eq4-log", "Eq. 4", "log(S) instead of log(1 + S)",
           Edit(W, "log_dep = xp.log1p(", "log_dep = xp.log(")),
    mutant("eq4-skipped", "Eq. 4", "S used without the log",
           Edit(W, "log_dep = xp.log1p(", "log_dep = (")),
    mutant("eq5-no-eps", "Eq. 5", "min-max normalisation without eps",
           Edit(W, "(log_dep - low) / (spread + eps)", "(log_dep - low) / spread")),
    mutant("eq5-padding-in-min", "Eq. 5", "padding (S = 0) enters the min",
           Edit(W, "low = xp.min(xp.where(response_mask, log_dep, big), axis=-1, keepdims=True)",
                "low = xp.min(log_dep, axis=-1, keepdims=True)")),
    mutant("eq6-boundary", "Eq. 6", "I = tau goes to the suppressed branch",
           Edit(W, "xp.where(importance < thr, suppressed, boosted)",
                "xp.where(importance <= thr, suppressed, boosted)")),
    mutant("eq6-no-one", "Eq. 6", "boosted branch without the 1 +",
           Edit(W, "boosted = 1 + beta * (importance - thr)", "boosted = beta * (importance - thr)"),
           quick=True),
    mutant("eq6-denominator", "Eq. 6", "boosted branch divided by (1 + eps), tau not subtracted",
           Edit(W, "(importance - thr) / (1 - thr + eps)", "(importance - thr) / (1 + eps)")),
    mutant("eq6-suppressed-no-eps", "Eq. 6", "suppressed branch divided by tau alone",
           Edit(W, "suppressed = importance / (thr + eps)", "suppressed = importance / thr")),
    mutant("eq7-no-length", "Eq. 7", "weights normalised to sum 1, not |o_i|",
           Edit(W, "raw = raw / xp.where(fallback, one, total) * count",
                "raw = raw / xp.where(fallback, one, total)")),
    mutant("eq7-batch-sum", "Eq. 7", "normalised by the batch's sum instead of the response's",
           Edit(W, "total = xp.sum(raw, axis=-1, keepdims=True)",
                "total = xp.sum(raw) * xp.ones((raw.shape[0], 1), dtype=dtype, device=dev)")),
    mutant("eq7-padded-length", "Eq. 7", "|o_i| counted with padding (T instead of the length)",
           Edit(W, "count = xp.sum(xp.astype(response_mask, dtype), axis=-1, keepdims=True)",
                "count = xp.sum(xp.ones_like(log_dep), axis=-1, keepdims=True)")),
    mutant("constant-no-fallback", "choices", "a constant response does not fall back to w~ = 1",
           Edit(W, "fallback = constant | ~(total > 0)", "fallback = ~(total > 0)")),
    mutant("quantile-padding", "quantile variant", "padding enters the quantile",
           Edit(W, "xp.sort(xp.where(mask, values, xp.asarray(2.0, dtype=dtype, device=dev)), axis=-1)",
                "xp.sort(values, axis=-1)")),
    mutant("quantile-lower", "quantile variant", "lower order statistic, no interpolation",
           Edit(W, "    return at_lower + (position - lower) * (at_upper - at_lower)",
                "    return at_lower"), quick=True),
    mutant("floor-ignored", "floor variant", "low_weight_floor ignored",
           Edit(W, "    if low_weight_floor > 0:\n", "    if False:\n")),
    mutant("eq8-weights-dropped", "Eq. 8", "A~ = A: the weights are computed but not applied",
           Edit(W, "    shaped = per_token * xp.astype(weights, dtype)",
                "    shaped = per_token * (1 + 0 * xp.astype(weights, dtype))")),
    # ------------------------------------------------------------------ Eq. 2 advantages
    mutant("eq2-global-mean", "Eq. 2", "the batch mean instead of the group mean",
           Edit(A, "mean = xp.sum(xp.where(same, row, zero), axis=1) / count",
                "mean = xp.sum(r) / n + 0 * count")),
    mutant("eq2-eps-in-sqrt", "Eq. 2", "sqrt(var + eps) instead of std + eps",
           Edit(A, "advantages = advantages / (std + eps)",
                "advantages = advantages / xp.sqrt(var + eps)"), quick=True),
    mutant("eq2-correction-ignored", "Eq. 2", "always the unbiased std",
           Edit(A, "dof = count - correction", "dof = count - 1")),
    mutant("all-equal-by-std", "dynamic sampling", "all_equal as std == 0",
           Edit(A, "all_equal = group_max == group_min", "all_equal = std == 0")),
    mutant("all-equal-by-eps", "dynamic sampling", "all_equal as std < eps",
           Edit(A, "all_equal = group_max == group_min", "all_equal = std < eps")),
    mutant("all-equal-not-zeroed", "dynamic sampling", "advantages of all-equal groups not set to 0",
           Edit(A, "    advantages = xp.where(all_equal, zero, advantages)\n", "")),
    # ------------------------------------------------------------------------ Eq. 9 loss
    mutant("ratio-inverted", "Eq. 9", "r = pi_old / pi",
           Edit(L, "xp.astype(logp, dtype) - xp.astype(logp_old, dtype), zero)",
                "xp.astype(logp_old, dtype) - xp.astype(logp, dtype), zero)")),
    mutant("clip-symmetric", "Eq. 9", "clip_low used for the upper bound too",
           Edit(L, "xp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)",
                "xp.clip(ratio, 1.0 - clip_low, 1.0 + clip_low)")),
    mutant("min-not-max", "Eq. 9", "optimistic min instead of the pessimistic max",
           Edit(L, "per_token = xp.maximum(unclipped, clipped)",
                "per_token = xp.minimum(unclipped, clipped)")),
    mutant("dual-clip-both-signs", "dual clip", "dual clip applied to positive advantages too",
           Edit(L, "dual_active = (adv < 0) & (per_token > bound)",
                "dual_active = per_token > bound")),
    mutant("padding-reaches-exp", "loss gradient", "padded log-ratios reach exp (NaN gradients)",
           Edit(L, "    log_ratio = xp.where(response_mask,\n"
                   "                         xp.astype(logp, dtype) - xp.astype(logp_old, dtype), zero)",
                "    log_ratio = xp.astype(logp, dtype) - xp.astype(logp_old, dtype)"),
           backends="numpy,torch"),
    mutant("no-log-ratio-clamp", "loss", "no clamp of the log-ratio before exp",
           Edit(L, "    if log_ratio_clip is not None:\n        log_ratio = xp.clip(",
                "    if False:\n        log_ratio = xp.clip(")),
    mutant("token-mean-counts-padding", "aggregation", "token-mean divides by B * T",
           Edit(L, "return xp.sum(masked) / xp.maximum(xp.sum(xp.astype(mask, dtype)), one)",
                "return xp.sum(masked) / (per_token.shape[0] * per_token.shape[1])")),
    mutant("sum-norm-ignores-norm-length", "aggregation", "norm_length ignored",
           Edit(L, "seq = seq_sum / (per_token.shape[-1] if norm_length is None else norm_length)",
                "seq = seq_sum / per_token.shape[-1]")),
    mutant("normalizer-clamped", "aggregation", "a normalizer below 1 clamped to 1 (issue 8)",
           Edit(L, "        return xp.sum(seq) / normalizer\n",
                "        return xp.sum(seq) / max(normalizer, 1)\n")),
    mutant("seq-mean-skips-empty-rows", "aggregation", "seq-mean divides by the non-empty rows",
           Edit(L, "    return xp.sum(seq) / max(per_token.shape[0], 1)",
                "    return xp.sum(seq) / xp.maximum(xp.sum(xp.astype(xp.any(mask, axis=-1), dtype)), one)")),
    # --------------------------------------------------------------------------- metrics
    mutant("ratio-max-over-padding", "metrics", "ratio_max includes padding (ratio 1 there)",
           Edit(L, '"ratio_max": xp.max(xp.where(response_mask, ratio, zero))',
                '"ratio_max": xp.max(ratio)')),
    mutant("clip-frac-over-padding", "metrics", "clip_frac averaged over padding too",
           Edit(L, '"clip_frac": _masked_mean(xp, as_float(clipped_low | clipped_high), response_mask)',
                '"clip_frac": xp.mean(as_float(clipped_low | clipped_high))')),
    mutant("clip-frac-low-any-sign", "metrics", "clip_frac_low ignores the advantage's sign",
           Edit(L, "clipped_low = (ratio < 1.0 - clip_low) & (adv_full < 0)",
                "clipped_low = (ratio < 1.0 - clip_low) & (adv_full == adv_full)")),
    mutant("approx-kl-reversed", "metrics", "approx_kl with the ratio inverted",
           Edit(L, "xp.expm1(log_ratio) - log_ratio, response_mask)",
                "xp.expm1(-log_ratio) + log_ratio, response_mask)")),
    mutant("advantage-mean-over-padding", "metrics", "advantage_mean averaged over padding",
           Edit(L, '"advantage_mean": _masked_mean(xp, adv_full, response_mask)',
                '"advantage_mean": xp.mean(adv_full)')),
    mutant("frac-above-tau-fixed", "diagnostics", "frac_above_tau ignores threshold='quantile'",
           Edit(G, "xp.astype(importance >= thr, dtype)", "xp.astype(importance >= tau, dtype)")),
    mutant("dependency-max-over-padding", "diagnostics", "dependency_max includes padding",
           Edit(G, "xp.max(xp.where(response_mask, dep, -big))", "xp.max(dep)")),
    mutant("effective-frac-no-length", "diagnostics", "effective_token_frac not divided by |o|",
           Edit(G, "count[:, 0] * w_sq", "w_sq")),
    mutant("boosted-tokens-all-rows", "diagnostics", "boosted_tokens divides by B, empty rows included",
           Edit(G, '"boosted_tokens": xp.sum(boosted) / n_rows', '"boosted_tokens": xp.sum(boosted) / boosted.shape[0]')),
    # --------------------------------------------- issue 19: the three that passed, siblings
    mutant("constant-only-length-one", "choices",
           "only a length-1 response falls back to w~ = 1, not a constant longer one",
           Edit(W, "    constant = ~(spread > 0)\n", "    constant = ~(count > 1)\n")),
    mutant("token-mean-seq-means", "aggregation",
           "token-mean as the mean of per-sequence means (GRPO's under DAPO's name)",
           Edit(L, "        return xp.sum(masked) / xp.maximum(xp.sum(xp.astype(mask, dtype)), one)\n",
                "        return xp.sum(xp.sum(masked, axis=-1) / xp.maximum(xp.sum("
                "xp.astype(mask, dtype), axis=-1), one)) / max(per_token.shape[0], 1)\n"),
           quick=True),
    mutant("token-mean-normalizer-seq-means", "aggregation",
           "token-mean with a normalizer sums per-sequence means",
           Edit(L, "            return xp.sum(masked) / normalizer\n",
                "            return xp.sum(xp.sum(masked, axis=-1) / xp.maximum(xp.sum("
                "xp.astype(mask, dtype), axis=-1), one)) / normalizer\n")),
    mutant("token-mean-by-longest", "aggregation",
           "token-mean divides by B times the longest response",
           Edit(L, "        return xp.sum(masked) / xp.maximum(xp.sum(xp.astype(mask, dtype)), one)\n",
                "        return xp.sum(masked) / (per_token.shape[0] * xp.maximum(xp.max(xp.sum("
                "xp.astype(mask, dtype), axis=-1)), one))\n")),
    mutant("seq-mean-token-mean-counts-padding", "aggregation",
           "seq-mean-token-mean averages each row over T, padding included",
           Edit(L, "        seq = seq_sum / xp.maximum(xp.sum(xp.astype(mask, dtype), axis=-1), one)\n",
                "        seq = seq_sum / per_token.shape[-1]\n")),
    mutant("token-sum-as-token-mean", "aggregation",
           "seq-mean-token-sum divides each row by its length",
           Edit(L, "    elif aggregation == \"seq-mean-token-sum\":\n        seq = seq_sum\n",
                "    elif aggregation == \"seq-mean-token-sum\":\n        seq = seq_sum / xp.maximum("
                "xp.sum(xp.astype(mask, dtype), axis=-1), one)\n")),
    mutant("sum-norm-longest-response", "aggregation",
           "Dr. GRPO's norm_length defaults to the longest response, not T",
           Edit(L, "seq = seq_sum / (per_token.shape[-1] if norm_length is None else norm_length)",
                "seq = seq_sum / (xp.maximum(xp.max(xp.sum(xp.astype(mask, dtype), axis=-1)), one) "
                "if norm_length is None else norm_length)"),
           quick=True),
    mutant("sum-norm-own-length", "aggregation",
           "Dr. GRPO's norm_length defaults to each response's own length (GRPO again)",
           Edit(L, "seq = seq_sum / (per_token.shape[-1] if norm_length is None else norm_length)",
                "seq = seq_sum / (xp.maximum(xp.sum(xp.astype(mask, dtype), axis=-1), one) "
                "if norm_length is None else norm_length)")),
    mutant("masked-mean-of-row-means", "metrics",
           "masked_mean and the loss metrics as the mean of per-row means",
           Edit(L, "    dev = _device(values)\n    zero = xp.zeros((), dtype=values.dtype, device=dev)\n"
                   "    total = xp.sum(xp.where(mask, values, zero), axis=axis)\n",
                "    if axis is None and values.ndim == 2:\n"
                "        return xp.mean(_masked_mean(xp, values, mask, axis=-1))\n"
                "    dev = _device(values)\n    zero = xp.zeros((), dtype=values.dtype, device=dev)\n"
                "    total = xp.sum(xp.where(mask, values, zero), axis=axis)\n")),
    mutant("diagnostics-row-means", "diagnostics",
           "dependency_mean, weight_mean, frac_above_tau, boosted_frac as means of row means",
           Edit(G, "        return xp.sum(xp.where(response_mask, values, zero)) / n_tokens\n",
                "        rows = xp.sum(xp.where(response_mask, values, zero), axis=-1)\n"
                "        return xp.sum(rows / xp.maximum(count[:, 0], one)) / n_rows\n")),
    mutant("seq-mean-empty-row-nan", "aggregation",
           "seq-mean-token-mean divides an empty row by 0 (NaN)",
           Edit(L, "        seq = seq_sum / xp.maximum(xp.sum(xp.astype(mask, dtype), axis=-1), one)\n",
                "        seq = seq_sum / xp.sum(xp.astype(mask, dtype), axis=-1)\n")),
    mutant("eq5-batch-minmax", "Eq. 5", "min and max of Eq. 5 over the batch, not the response",
           Edit(W, "low = xp.min(xp.where(response_mask, log_dep, big), axis=-1, keepdims=True)",
                "low = xp.min(xp.where(response_mask, log_dep, big))"),
           Edit(W, "high = xp.max(xp.where(response_mask, log_dep, -big), axis=-1, keepdims=True)",
                "high = xp.max(xp.where(response_mask, log_dep, -big))")),
    mutant("quantile-over-batch", "quantile variant",
           "the quantile threshold taken over the batch's tokens, not the response's",
           Edit(W, "        return _masked_quantile(xp, importance, response_mask, count, tau)",
                "        return _masked_quantile(xp, xp.reshape(importance, (1, -1)), "
                "xp.reshape(response_mask, (1, -1)), xp.sum(count, keepdims=True), tau)")),
    mutant("zero-mass-no-fallback", "choices", "raw weights summing to 0 do not fall back",
           Edit(W, "fallback = constant | ~(total > 0)", "fallback = constant")),
    # ------------------------------------------------------------------------ validation
    mutant("rewards-nan-accepted", "validation", "NaN rewards not refused",
           Edit(A, '    validation.check_finite("rewards", xp, rewards)\n', "")),
    mutant("mask-any-dtype", "validation", "a non-boolean mask is accepted",
           Edit(V, "    if x.dtype != xp.bool:\n", "    if False:\n")),
    mutant("negative-dependency-accepted", "validation", "S < 0 accepted",
           Edit(V, "    if concrete_bool(xp.all((x >= 0) | ~mask)) is False:",
                "    if False:")),
    mutant("shapes-broadcast", "validation", "mismatched shapes silently broadcast",
           Edit(V, "    if tuple(x.shape) != tuple(ref.shape):\n", "    if False:\n")),
]

VARIANTS = [
    variant("float64-everywhere", "dtype latitude", "every result in float64",
            Edit(V, "    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype",
                 "    return xp.float64"), quick=True, backends="numpy,torch"),
    variant("kl-log-softmax", "Eq. 1", "KL from two explicit log-softmaxes",
            Edit(D, "    cross = xp.sum(exp_a * (a - b), axis=-1) / sum_a\n"
                    "    return cross - xp.log(sum_a) + xp.log(sum_b)",
                 "    log_p = a - xp.log(sum_a)[..., None]\n"
                 "    log_q = b - xp.log(sum_b)[..., None]\n"
                 "    return xp.sum(xp.exp(log_p) * (log_p - log_q), axis=-1)")),
    variant("kl-vecdot", "Eq. 1", "the KL's sum as a dot product (BLAS-style rounding)",
            Edit(D, "    cross = xp.sum(exp_a * (a - b), axis=-1) / sum_a",
                 "    cross = xp.vecdot(exp_a, a - b, axis=-1) / sum_a")),
    variant("messages-name-last", "error latitude", "messages name the argument at the end",
            Edit(V, 'raise TypeError(f"{name}: expected a real floating dtype, got {x.dtype}")',
                 'raise TypeError(f"expected a real floating dtype, got {x.dtype} (argument {name})")'),
            Edit(V, 'raise ValueError(f"{name}: must lie in [{low}, {high}], got {value}")',
                 'raise ValueError(f"got {value} outside [{low}, {high}] for {name}")'),
            Edit(V, 'raise ValueError(f"{name}: contains NaN or inf")',
                 'raise ValueError(f"NaN or inf found in {name}")')),
    variant("chunk-size-type-error", "error latitude", "TypeError for a non-integer chunk_size",
            Edit(V, "    if not isinstance(value, int) or isinstance(value, bool) or value < 1:",
                 "    if not isinstance(value, int) or isinstance(value, bool):\n"
                 "        raise TypeError(f\"chunk_size: expected an int, got {type(value).__name__}\")\n"
                 "    if value < 1:")),
    variant("extra-keys", "metrics latitude", "one more metric and one more diagnostic",
            Edit(L, '        "advantage_mean": _masked_mean(xp, adv_full, response_mask),\n',
                 '        "advantage_mean": _masked_mean(xp, adv_full, response_mask),\n'
                 '        "log_ratio_mean": _masked_mean(xp, log_ratio, response_mask),\n'),
            Edit(G, '        "effective_token_frac": xp.sum(ess) / n_rows,\n',
                 '        "effective_token_frac": xp.sum(ess) / n_rows,\n'
                 '        "n_tokens": n_tokens,\n')),
    variant("logits-checked-separately", "error latitude",
            "each logits array checked and named on its own",
            Edit(V, '    check_ndim("logits_visual", logits_visual, 3)\n'
                    '    check_same_shape("logits_blind", logits_blind, "logits_visual", logits_visual)',
                 '    check_ndim("logits_visual", logits_visual, 3)\n'
                 '    check_ndim("logits_blind", logits_blind, 3)\n'
                 '    if tuple(logits_blind.shape) != tuple(logits_visual.shape):\n'
                 '        raise ValueError(f"logits_visual and logits_blind: shapes differ")')),
    variant("pessimistic-min-form", "Eq. 9", "loss as -min(A r, A clip(r)), PPO's own form",
            Edit(L, "    unclipped = -adv * ratio\n"
                    "    clipped = -adv * xp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)\n"
                    "    per_token = xp.maximum(unclipped, clipped)",
                 "    per_token = -xp.minimum(adv * ratio,\n"
                 "                            adv * xp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high))")),
    variant("mass-product-first", "Eq. 7", "w * |o| / sum w with the product first",
            Edit(W, "raw = raw / xp.where(fallback, one, total) * count",
                 "raw = (raw * count) / xp.where(fallback, one, total)")),
    variant("quantile-weighted-form", "quantile variant", "(1 - f) lower + f upper",
            Edit(W, "    return at_lower + (position - lower) * (at_upper - at_lower)",
                 "    frac = position - lower\n"
                 "    return (1 - frac) * at_lower + frac * at_upper")),
    variant("k3-exp-minus-one", "k3", "k3 with exp(log r) - 1 instead of expm1",
            Edit(D, "xp.maximum(xp.expm1(log_r) - log_r, zero)",
                 "xp.maximum((xp.exp(log_r) - 1) - log_r, zero)")),
    variant("std-via-population", "Eq. 2", "variance as population variance rescaled",
            Edit(A, "var = xp.where(dof > 0, sq / xp.maximum(dof, xp.ones((), dtype=dtype, device=dev)), zero)",
                 "var = xp.where(dof > 0, (sq / count) * (count / xp.maximum(dof, xp.ones((), dtype=dtype, device=dev))), zero)")),
    variant("frozen-by-setattr", "config", "a frozen config raising a plain AttributeError",
            # PGPOConfig inherits its weighting fields: a non-frozen dataclass cannot
            # inherit from a frozen one, so the declaration is unfrozen as well.
            Edit("hyperparameters.py",
                 "@dataclasses.dataclass(frozen=True, kw_only=True)\nclass WeightingHyperparameters:",
                 "@dataclasses.dataclass(kw_only=True, unsafe_hash=True)\n"
                 "class WeightingHyperparameters:"),
            Edit("config.py",
                 "@dataclasses.dataclass(frozen=True, kw_only=True)\n"
                 "class PGPOConfig(WeightingHyperparameters):",
                 "@dataclasses.dataclass(kw_only=True, unsafe_hash=True)\n"
                 "class PGPOConfig(WeightingHyperparameters):"),
            # PGPOConfig's __post_init__ (VPPOConfig has one too): the line after next names it.
            Edit("config.py", "    def __post_init__(self) -> None:\n"
                              "        super().__post_init__()\n"
                              "        validation.check_choice(\"estimator\", self.estimator, "
                              "DEPENDENCY_ESTIMATORS)",
                 "    def __setattr__(self, name, value):\n"
                 "        if getattr(self, '_sealed', False):\n"
                 "            raise AttributeError(f'{name}: PGPOConfig is read-only; use replace()')\n"
                 "        object.__setattr__(self, name, value)\n\n"
                 "    def __post_init__(self) -> None:\n"
                 "        object.__setattr__(self, '_sealed', True)\n"
                 "        super().__post_init__()\n"
                 "        validation.check_choice(\"estimator\", self.estimator, "
                 "DEPENDENCY_ESTIMATORS)")),
    variant("token-mean-row-sums-first", "aggregation",
            "token-mean as the sum of the rows' sums over the token count (other rounding)",
            Edit(L, "        return xp.sum(masked) / xp.maximum(xp.sum(xp.astype(mask, dtype)), one)\n",
                 "        return xp.sum(xp.sum(masked, axis=-1)) / xp.maximum(xp.sum(xp.sum("
                 "xp.astype(mask, dtype), axis=-1)), one)\n")),
    variant("eq7-scale-free-all-suppressed", "Eq. 7, fallbacks",
            "a response with every token suppressed normalises I itself (1 / (tau + eps) "
            "cancels in Eq. 7), so a large eps cannot underflow its weights to a zero sum",
            Edit(W, "    raw = xp.where(importance < thr, suppressed, boosted)\n",
                 "    raw = xp.where(importance < thr, suppressed, boosted)\n"
                 "    if conserve_mass and low_weight_floor == 0:\n"
                 "        all_low = xp.all((importance < thr) | ~response_mask, axis=-1, keepdims=True)\n"
                 "        raw = xp.where(all_low, importance, raw)\n")),
]

ENTRIES = MUTANTS + VARIANTS
