"""Verifiable rewards: ``\\boxed{}`` extraction, answer matching and the paper's 0.9/0.1 mix.

PGPO (Ye et al., 2026, Sec. 5) trains with the EasyR1 rule-based reward

    r(o, y) = 0.9 * accuracy(o, y) + 0.1 * format(o),

where ``format(o) = 1`` when the response is a ``<think>...</think>`` block followed by
text that holds a ``\\boxed{...}`` answer (:func:`format_reward`), and
``accuracy(o, y) = 1`` when the last ``\\boxed{...}`` of the response equals the ground
truth ``y`` (:func:`answers_match`: normalised text, exact rationals, then math-verify's
symbolic equivalence).
Both parts are returned separately (:class:`RewardBreakdown`) so a trainer can log
accuracy and format on their own.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import threading
from fractions import Fraction
from typing import Sequence

__all__ = [
    "RewardBreakdown",
    "accuracy_reward",
    "answers_match",
    "extract_boxed",
    "format_reward",
    "normalize_answer",
    "verifiable_reward",
    "verifiable_rewards",
]

_BOXED = re.compile(r"\\boxed\s*\{")


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected str, got {type(value).__name__}")


def _matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index``; ``None`` if never closed.

    Escaped braces (``\\{``, ``\\}``) are literal characters, not grouping.
    """
    depth = 0
    i = open_index
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character (\{, \}, \\)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{...}`` in ``text``, or ``None``.

    Braces nest (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); a ``\\boxed`` inside
    another one belongs to the outer content. When the last ``\\boxed{`` is never closed
    (a truncated or malformed final answer) the result is ``None``: an earlier, complete
    box is not taken as the final answer.
    """
    _check_str("text", text)
    found: str | None = None
    pos = 0
    while True:
        m = _BOXED.search(text, pos)
        if m is None:
            return found
        open_index = m.end() - 1
        close = _matching_brace(text, open_index)
        if close is None:
            return None
        found = text[open_index + 1 : close]
        pos = close + 1


# --- normalisation ---------------------------------------------------------------------

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|boxed)\s*\{")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|\\left|\\right|~")
_FRAC = re.compile(r"^\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")
_CHOICE = re.compile(r"^\(([a-z])\)$")


def _unwrap(text: str) -> str:
    """Replace ``\\text{x}`` (and similar wrappers, including ``\\boxed``) by ``x``."""
    while True:
        m = _WRAPPERS.search(text)
        if m is None:
            return text
        close = _matching_brace(text, m.end() - 1)
        if close is None:  # unbalanced wrapper: drop only the command name
            return text[: m.start()] + text[m.end():]
        text = text[: m.start()] + text[m.end(): close] + text[close + 1:]


def normalize_answer(answer: str) -> str:
    """Canonical form used for exact matching.

    Unwraps ``\\text{}``-style commands (and a ``\\boxed{}`` in the ground truth), drops
    ``$``, LaTeX spacing commands and all whitespace, lower-cases, removes trailing
    periods, and reduces a lone parenthesised choice ``(B)`` to ``b``.
    """
    _check_str("answer", answer)
    s = _unwrap(answer)
    s = s.replace("$", "")
    s = _SPACING.sub("", s)
    s = "".join(s.split()).lower()
    s = s.rstrip(".")
    m = _CHOICE.match(s)
    if m:
        s = m.group(1)
    return s


def _as_number(s: str) -> Fraction | None:
    """A normalised answer as an exact rational (``3``, ``2.0``, ``-1/2``, ``\\frac{3}{4}``)."""
    m = _FRAC.match(s)
    if m:
        s = f"{m.group(1)}/{m.group(2)}"
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None  # not a finite number (text, percentages, "inf", "1/0")


# --- mathematical equivalence (math-verify) ----------------------------------------------

#: Seconds math-verify may spend parsing one answer, and comparing two (its own limit,
#: a ``SIGALRM`` alarm; whole seconds). A pathological answer (``9^{9^{9}}``) is then
#: scored wrong instead of stalling the run.
MATH_VERIFY_TIMEOUT = 1
#: Decimal places numbers are rounded to before math-verify compares them. math-verify's
#: (and TRL's) default is 6, which scores ``0.333333`` right for ``1/3``; we keep decimals
#: (nearly) exact, as the rational fast path is.
FLOAT_ROUNDING = 10
#: Answers longer than this many characters are compared as text only.
MAX_ANSWER_CHARS = 1000

_WORD = re.compile(r"[a-z]{2,}")
_worker = None  # process pool used off the main thread (see _math_equivalent)
_worker_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def _parse(answer: str) -> tuple:
    """math-verify's parse of a bare answer, as an immutable, cached tuple (the same
    ground truth is compared with every response of its group)."""
    from math_verify import parse

    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=MATH_VERIFY_TIMEOUT))


def _math_verify(prediction: str, answer: str) -> bool:
    """math-verify's ``verify(gold=answer, target=prediction)``; must run on a main thread."""
    from math_verify import verify

    gold, target = _parse(answer), _parse(prediction)
    if not gold or not target:
        return False
    return bool(verify(list(gold), list(target), float_rounding=FLOAT_ROUNDING,
                       timeout_seconds=MATH_VERIFY_TIMEOUT))


def _math_equivalent(prediction: str, answer: str) -> bool:
    """Whether math-verify finds the two answers equal, within :data:`MATH_VERIFY_TIMEOUT`.

    math-verify bounds its work with ``signal.alarm``, which Python allows on the main
    thread only. There it runs in this process (cancelling, for its duration, any alarm
    the caller set); on any other thread (a reward worker thread, a data-loader thread)
    the call is sent to a one-process pool, on whose main thread the same limit holds.
    """
    global _worker
    if threading.current_thread() is threading.main_thread():
        return _math_verify(prediction, answer)
    with _worker_lock:
        if _worker is None:
            import atexit
            import concurrent.futures
            import multiprocessing

            _worker = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            # Shut it down while the interpreter is whole: left to its weakref callback at
            # exit, it prints "Exception ignored ... 'NoneType' object has no attribute
            # 'util'" after a run that went well.
            atexit.register(_worker.shutdown, wait=True)
        worker = _worker
    return worker.submit(_math_verify, prediction, answer).result()


def answers_match(prediction: str, answer: str) -> bool:
    """Whether a predicted answer is the ground truth ``answer``.

    1. Text: equal after :func:`normalize_answer` (``"(B)"`` = ``"b"``, ``"\\text{Red}"`` =
       ``"red"``).
    2. Numbers: equal as exact rationals (``"2" == "2.0" == "4/2" == "\\frac{4}{2}"``,
       ``"0.5" == "1/2"``, ``"1e2" == "100"``).
    3. Otherwise math-verify (the answer checker TRL uses; EasyR1, the paper's trainer,
       uses the similar mathruler): symbolic equality after LaTeX parsing, so
       ``30^\\circ`` = ``30``, ``x=5`` = ``5``, ``50\\%`` = ``50``, ``\\pi/2`` =
       ``\\frac{\\pi}{2}``, ``\\frac{\\sqrt3}{2}`` = ``\\frac{\\sqrt{3}}{2}``, ``x+1`` = ``1+x``.
       Numbers are rounded to :data:`FLOAT_ROUNDING` places first (``"0.1" !=
       "0.1000001"``). Skipped when either side is a plain word of two or more letters
       (math-verify reads ``left`` as the product ``l*e*f*t``, equal to ``felt``) or
       longer than :data:`MAX_ANSWER_CHARS`; a parse or comparison that runs past
       :data:`MATH_VERIFY_TIMEOUT` counts as no match.
    """
    _check_str("prediction", prediction)
    _check_str("answer", answer)
    a, b = normalize_answer(prediction), normalize_answer(answer)
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return x == y
    if _WORD.fullmatch(a) or _WORD.fullmatch(b):
        return False
    if max(len(prediction), len(answer)) > MAX_ANSWER_CHARS:
        return False
    return _math_equivalent(prediction.strip(), answer.strip())


# --- rewards ---------------------------------------------------------------------------

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_THINK_TAG = re.compile(r"</?think>")


def format_reward(text: str) -> float:
    """1.0 if ``text`` is reasoning in ``<think>...</think>`` then a ``\\boxed{...}`` answer, else 0.0.

    The paper's format (EasyR1's ``<think>.*</think>.*\\boxed{.*}`` template): the
    response starts with ``<think>`` (surrounding whitespace allowed), and after the
    last ``</think>`` comes a complete (balanced) ``\\boxed{}``. Our rule for what the
    template leaves open: reasoning may come in several think blocks
    (``<think>a</think> text <think>b</think> \\boxed{3}`` has the format), but the
    tags must be well formed: each ``<think>`` closed by the next ``</think>`` before
    another opens (no nesting, no stray or unclosed tag).
    """
    _check_str("text", text)
    body = text.strip()
    if not body.startswith(_THINK_OPEN):
        return 0.0
    tags = _THINK_TAG.findall(body)
    if tags != [_THINK_OPEN, _THINK_CLOSE] * (len(tags) // 2) or len(tags) % 2:
        return 0.0
    after = body.rsplit(_THINK_CLOSE, 1)[1]
    return 1.0 if extract_boxed(after) is not None else 0.0


def accuracy_reward(text: str, answer: str) -> float:
    """1.0 if the last ``\\boxed{}`` of ``text`` matches ``answer`` (:func:`answers_match`)."""
    _check_str("text", text)
    _check_str("answer", answer)
    predicted = extract_boxed(text)
    if predicted is None:
        return 0.0
    return 1.0 if answers_match(predicted, answer) else 0.0


@dataclasses.dataclass(frozen=True)
class RewardBreakdown:
    """One response's reward and its parts: ``reward = wa * accuracy + wf * format``."""

    reward: float
    accuracy: float
    format: float


def _check_weight(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    return float(value)


def verifiable_reward(
    text: str, answer: str, *, accuracy_weight: float = 0.9, format_weight: float = 0.1
) -> RewardBreakdown:
    """The paper's rule-based reward ``0.9 * accuracy + 0.1 * format`` (Sec. 5, EasyR1).

    Args:
      text: the sampled response (decoded, without the prompt).
      answer: the ground-truth answer (a ``\\boxed{}`` wrapper in it is unwrapped).
      accuracy_weight, format_weight: the mixing weights (defaults 0.9 and 0.1).
    """
    wa = _check_weight("accuracy_weight", accuracy_weight)
    wf = _check_weight("format_weight", format_weight)
    acc = accuracy_reward(text, answer)
    fmt = format_reward(text)
    return RewardBreakdown(reward=wa * acc + wf * fmt, accuracy=acc, format=fmt)


def verifiable_rewards(
    texts: Sequence[str],
    answers: Sequence[str],
    *,
    accuracy_weight: float = 0.9,
    format_weight: float = 0.1,
) -> list[RewardBreakdown]:
    """:func:`verifiable_reward` for paired lists of responses and answers (same length)."""
    if isinstance(texts, str) or isinstance(answers, str):
        raise TypeError("texts, answers: expected sequences of str, got a single str")
    if len(texts) != len(answers):
        raise ValueError(
            f"answers: length {len(answers)} does not match texts' length {len(texts)}"
        )
    return [
        verifiable_reward(t, a, accuracy_weight=accuracy_weight, format_weight=format_weight)
        for t, a in zip(texts, answers)
    ]
