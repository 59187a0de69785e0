"""Input validation of :mod:`pgpo_core`, public so that adapters and integrations
check their arguments exactly as the core does (one copy of every check).

Every check raises a ``TypeError`` or ``ValueError`` whose message starts with
the name of the offending argument. Checks that need array *values* (NaN/inf,
sign) run only when the values can be read eagerly: inside ``jax.jit`` the
arrays are tracers and those checks are skipped (shapes and dtypes are still
checked, since they are static).
"""

from __future__ import annotations

import sys
from typing import Any

from array_api_compat import array_namespace, is_array_api_obj, is_torch_array


def namespace(**arrays: Any):
    """Return the common array namespace of ``arrays`` (keyword = argument name).

    ``None`` values are ignored. Raises ``TypeError`` naming the argument that
    is not an array, or the arguments whose namespaces differ.
    """
    present = {name: a for name, a in arrays.items() if a is not None}
    for name, a in present.items():
        if not is_array_api_obj(a):
            raise TypeError(
                f"{name}: expected an array (numpy, torch, jax, cupy, array-api-strict, ...), "
                f"got {type(a).__name__}"
            )
    spaces = {name: array_namespace(a) for name, a in present.items()}
    first_name, first_xp = next(iter(spaces.items()))
    for name, xp in spaces.items():
        if xp is not first_xp:
            raise TypeError(
                f"{name}: array namespace {xp.__name__} differs from {first_name}'s "
                f"{first_xp.__name__}; pass all arrays from one library"
            )
    return first_xp


def check_ndim(name: str, x: Any, ndim: int | tuple[int, ...]) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name}: expected {want} dimensions, got shape {tuple(x.shape)}")


def check_same_shape(name: str, x: Any, ref_name: str, ref: Any) -> None:
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name}: shape {tuple(x.shape)} does not match {ref_name}'s shape "
            f"{tuple(ref.shape)} (nothing is broadcast)"
        )


def check_floating(name: str, xp: Any, x: Any) -> None:
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name}: expected a real floating dtype, got {x.dtype}")


def check_bool(name: str, xp: Any, x: Any) -> None:
    if x.dtype != xp.bool:
        raise TypeError(
            f"{name}: expected a boolean mask (True = real response token), got dtype {x.dtype}"
        )


def check_response_mask(xp: Any, mask: Any, batch_shape: tuple[int, ...], ref_name: str) -> None:
    """``response_mask`` must be boolean with the ``(B, T)`` of ``ref_name``."""
    check_bool("response_mask", xp, mask)
    if tuple(mask.shape) != tuple(batch_shape):
        raise ValueError(
            f"response_mask: shape {tuple(mask.shape)} does not match the (B, T) = "
            f"{tuple(batch_shape)} of {ref_name}"
        )


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """float32 for half-precision inputs (float16, bfloat16), the input dtype otherwise."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def concrete_bool(flag: Any) -> bool | None:
    """``bool(flag)`` for an eager 0-d array; ``None`` when the value is traced.

    Traced means inside ``jax.jit``/``vmap`` (reading the value raises) or inside
    ``torch.compile`` (reading it would break the graph). Only ``sys.modules`` is
    consulted, so the core never imports torch itself.
    """
    if is_torch_array(flag):
        compiler = getattr(sys.modules.get("torch"), "compiler", None)
        if compiler is not None and compiler.is_compiling():
            return None
    try:
        return bool(flag)
    except Exception:  # jax tracers, lazy arrays: value not available eagerly
        return None


def check_finite(name: str, xp: Any, x: Any, mask: Any = None) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or inf (only where ``mask`` is True)."""
    ok = xp.isfinite(x)
    if mask is not None:
        ok = ok | ~mask
    if concrete_bool(xp.all(ok)) is False:
        raise ValueError(f"{name}: contains NaN or inf")


def check_nonnegative(name: str, xp: Any, x: Any, mask: Any) -> None:
    if concrete_bool(xp.all((x >= 0) | ~mask)) is False:
        raise ValueError(
            f"{name}: must be >= 0 on response tokens (a KL divergence); "
            "clamp signed estimators such as k1 at 0 first"
        )


def check_kl_finite(names: str, xp: Any, kl: Any, mask: Any) -> None:
    """Raise ``ValueError`` naming ``names`` (the KL's inputs) if the KL is not finite on
    a response token: NaN or inf in the inputs there."""
    if concrete_bool(xp.all(xp.isfinite(kl) | ~mask)) is False:
        raise ValueError(
            f"{names}: the KL is NaN or inf on a response token; "
            "the inputs contain NaN or inf there"
        )


def check_chunk_size(value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        alternative = " or None" if allow_none else ""
        raise ValueError(f"chunk_size: must be a positive int{alternative}, got {value!r}")


def check_in_range(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not (low <= value <= high):
        raise ValueError(f"{name}: must lie in [{low}, {high}], got {value}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name}: must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be {bound}, got {value}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(map(repr, choices))}; got {value!r}")


# ------------------------------------------------------------- checks of whole arguments

THRESHOLDS = ("fixed", "quantile")


def check_logits(xp: Any, logits_visual: Any, logits_blind: Any, response_mask: Any) -> None:
    """The array checks of :func:`pgpo_core.token_visual_dependency`: two ``(B, T, V)``
    floating arrays of one shape and dtype, and a boolean ``(B, T)`` mask."""
    check_ndim("logits_visual", logits_visual, 3)
    check_same_shape("logits_blind", logits_blind, "logits_visual", logits_visual)
    check_floating("logits_visual", xp, logits_visual)
    check_floating("logits_blind", xp, logits_blind)
    if logits_blind.dtype != logits_visual.dtype:
        raise TypeError(
            f"logits_blind: dtype {logits_blind.dtype} differs from logits_visual's "
            f"{logits_visual.dtype}"
        )
    check_response_mask(xp, response_mask, logits_visual.shape[:2], "logits_visual")


def check_loss_hyperparameters(*, clip_low: Any, clip_high: Any, dual_clip: Any,
                               aggregation: Any, aggregations: tuple[str, ...]) -> None:
    """The clipped policy loss's settings (PGPOConfig and VPPOConfig share them)."""
    check_in_range("clip_low", clip_low, 0.0, 1.0)
    check_positive("clip_high", clip_high, allow_zero=True)
    if dual_clip is not None and not (isinstance(dual_clip, (int, float)) and dual_clip > 1):
        raise ValueError(f"dual_clip: must be a number > 1 or None, got {dual_clip!r}")
    check_choice("aggregation", aggregation, aggregations)


def check_weight_hyperparameters(
    *, tau: float, beta: float, eps: float, threshold: str, low_weight_floor: float,
    conserve_mass: bool,
) -> None:
    """The hyper-parameters of :func:`pgpo_core.token_weights` (and of everything taking
    the same keywords)."""
    check_in_range("tau", tau, 0.0, 1.0)
    check_positive("beta", beta, allow_zero=True)
    check_positive("eps", eps)
    check_choice("threshold", threshold, THRESHOLDS)
    check_in_range("low_weight_floor", low_weight_floor, 0.0, 1.0)
    if not isinstance(conserve_mass, bool):
        raise TypeError(f"conserve_mass: expected a bool, got {type(conserve_mass).__name__}")


def check_dependency(xp: Any, dependency: Any, response_mask: Any, *,
                     name: str = "dependency") -> None:
    """A ``(B, T)`` floating array (the dependency, or token weights with ``name``),
    finite and >= 0 on response tokens, with its boolean mask (value checks step aside
    when the values are traced)."""
    check_ndim(name, dependency, 2)
    check_floating(name, xp, dependency)
    check_bool("response_mask", xp, response_mask)
    check_same_shape("response_mask", response_mask, name, dependency)
    check_finite(name, xp, dependency, response_mask)
    check_nonnegative(name, xp, dependency, response_mask)


def check_advantages(xp: Any, advantages: Any, response_mask: Any, ref_name: str,
                     ref: Any) -> Any:
    """``(B,)`` per-response or ``(B, T)`` per-token floating advantages for the ``(B, T)``
    array ``ref_name`` (``ref``, whose mask ``response_mask`` is checked already), finite
    on response tokens (a response without tokens may hold anything). Returns them as
    ``(B, 1)`` or ``(B, T)``, ready to broadcast against ``ref``."""
    check_floating("advantages", xp, advantages)
    check_ndim("advantages", advantages, (1, 2))
    if advantages.ndim == 1:
        if advantages.shape[0] != ref.shape[0]:
            raise ValueError(
                f"advantages: {advantages.shape[0]} responses, but {ref_name} has "
                f"{ref.shape[0]} rows"
            )
        advantages = xp.reshape(advantages, (advantages.shape[0], 1))
    else:
        check_same_shape("advantages", advantages, ref_name, ref)
    check_finite("advantages", xp, advantages, response_mask)
    return advantages


def check_vppo_hyperparameters(
    *, top_p: float, scale_min: float, range_eps: float, eps: float,
    trajectory_shaping: bool, token_filtering: bool,
) -> None:
    """The hyper-parameters of :func:`pgpo_core.vppo_advantages` (and of the VPPO functions
    taking the same keywords)."""
    check_in_range("top_p", top_p, 0.0, 1.0)
    if top_p == 0:
        raise ValueError("top_p: must be > 0 (0 keeps no token of any response)")
    check_in_range("scale_min", scale_min, 0.0, 1.0)
    check_positive("range_eps", range_eps, allow_zero=True)
    check_positive("eps", eps)
    for name, flag in (("trajectory_shaping", trajectory_shaping),
                       ("token_filtering", token_filtering)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {type(flag).__name__}")
