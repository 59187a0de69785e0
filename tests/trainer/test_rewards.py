"""Hand-worked cases for the verifiable reward (reference_impl/data/rewards.py)."""

from __future__ import annotations

import pytest

from reference_impl.data.rewards import (
    RewardBreakdown,
    accuracy_reward,
    answers_match,
    extract_boxed,
    format_reward,
    normalize_answer,
    verifiable_reward,
    verifiable_rewards,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"\boxed{3}", "3"),
        (r"The answer is \boxed{ 42 }.", " 42 "),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{{a}{b}{{c}}}", "{a}{b}{{c}}"),
        (r"first \boxed{1} then \boxed{2}", "2"),
        (r"\boxed{1} \boxed{\sqrt{2}} end", r"\sqrt{2}"),
        (r"\boxed {7}", "7"),  # whitespace before the brace
        (r"\boxed{}", ""),  # present but empty
        (r"\boxed{\boxed{5}}", r"\boxed{5}"),  # the inner box is part of the outer content
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not group
        (r"\boxed{a\}b}", r"a\}b"),
        ("no box here", None),
        (r"\boxed{3", None),  # never closed
        (r"\boxed{1} and a truncated \boxed{2", None),  # last box malformed: no answer
        (r"\boxed{1}}", "1"),  # a stray closing brace after the box is ignored
        (r"\boxed 3", None),  # the brace-less form is not an answer
        (r"\fbox{3}", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Red ", "red"),
        ("Left.", "left"),
        (r"\text{blue}", "blue"),
        (r"\text{ Above }.", "above"),
        (r"\textbf{3}", "3"),
        ("$12$", "12"),
        (r"2 \sqrt { 221 }", r"2\sqrt{221}"),
        (r"\boxed{B}", "b"),  # ground truths stored as \boxed{...}
        ("(C)", "c"),
        ("(C).", "c"),
        (r"3\,\text{cm}", "3cm"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        ("x..", "x"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "prediction, answer, expected",
    [
        ("2", "2.0", True),
        ("2.50", "2.5", True),
        ("-0.5", "-1/2", True),
        (r"\frac{3}{4}", "0.75", True),
        (r"\dfrac{3}{4}", "3/4", True),
        ("4/2", "2", True),
        ("1e2", "100", True),
        ("0.1", "0.1000001", False),  # decimals compare exactly, no tolerance
        ("3", "3.001", False),
        ("2", "20", False),
        ("Yellow", "yellow", True),
        ("yellow.", r"\text{Yellow}", True),
        ("A", "(A)", True),
        ("A", "B", False),
        ("", "", False),  # empty answers never match
        ("nan", "nan", True),  # identical text matches; no numeric NaN comparison
        ("50%", "50", True),  # math-verify: a percentage may be given without its sign
        ("1/0", "1/0", True),
        ("1/0", "inf", False),
        ("0.333333", "1/3", False),  # rounded to FLOAT_ROUNDING places, not math-verify's 6
        ("left", "felt", False),  # words are text, not products of symbols l*e*f*t
        ("no", "on", False),
        (r"x+1", "1+x", True),
        (r"2\sqrt{221}", r"\sqrt{884}", True),
        (r"\{1,2\}", r"\{2,1\}", True),  # sets
        (r"y=5", r"x=5", False),
        (r"60^\circ", "30", False),
        (r"x>5", "5", False),
    ],
)
def test_answers_match(prediction, answer, expected):
    assert answers_match(prediction, answer) is expected


# Pairs the hand-written normaliser scored wrong (issue 8); math-verify gets them right.
EQUIVALENT = [
    (r"30^\circ", "30"),
    ("x=5", "5"),
    (r"50\%", "50"),
    (r"\pi/2", r"\frac{\pi}{2}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}"),
]


@pytest.mark.parametrize("prediction, answer", EQUIVALENT)
def test_mathematically_equal_answers_match(prediction, answer):
    assert answers_match(prediction, answer)
    assert accuracy_reward(f"<think>..</think> \\boxed{{{prediction}}}", answer) == 1.0
    assert not answers_match(prediction, "7")


def test_answers_match_off_the_main_thread():
    """math-verify's time limit uses SIGALRM (main thread only): other threads hand the
    comparison to a worker process, with the same results."""
    import concurrent.futures

    cases = EQUIVALENT + [("7", "8"), ("left", "felt")]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda c: answers_match(*c), cases))
    assert got == [True] * len(EQUIVALENT) + [False, False]


def test_a_comparison_that_does_not_finish_counts_as_wrong():
    import time

    from reference_impl.data import rewards

    start = time.perf_counter()
    assert not answers_match("9^{9^{9}}", "5")  # sympy would evaluate 9**387420489
    assert time.perf_counter() - start < 6 * rewards.MATH_VERIFY_TIMEOUT


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"<think>count them: 3</think> The answer is \boxed{3}.", 1.0),
        ("<think>\nmultiline\nreasoning\n</think>\n\\boxed{left}", 1.0),
        (r"  <think>x</think>\boxed{1}  ", 1.0),  # surrounding whitespace allowed
        (r"<think></think>\boxed{1}", 1.0),  # an empty think block still has the format
        (r"\boxed{3}", 0.0),  # no think block
        (r"<think>3</think> the answer is 3", 0.0),  # no box
        (r"<think>\boxed{3}</think> so 3", 0.0),  # the box must come after </think>
        (r"I think <think>x</think> \boxed{3}", 0.0),  # think must come first
        (r"<think>x \boxed{3}", 0.0),  # think never closed
        (r"<think>a</think><think>b</think>\boxed{3}", 1.0),  # reasoning in two blocks
        (r"<think>a</think> so <think>b</think> \boxed{3}", 1.0),
        (r"<think>a<think>b</think></think>\boxed{3}", 0.0),  # nested blocks
        (r"<think>a</think>\boxed{3}<think>b</think>", 0.0),  # no answer after the last block
        (r"<think>a</think><think>b \boxed{3}", 0.0),  # second block never closed
        (r"<think>a</think></think>\boxed{3}", 0.0),  # stray closing tag
        (r"</think><think>x</think>\boxed{3}", 0.0),
        (r"<think>x</think> \boxed{3", 0.0),  # unbalanced box
        (r"<think>x</think> \boxed{3} \boxed{4", 0.0),  # last box unbalanced
        (r"<think>x</think> \boxed{}", 1.0),  # format only: an empty box is well formed
        ("", 0.0),
    ],
)
def test_format_reward(text, expected):
    assert format_reward(text) == expected


@pytest.mark.parametrize(
    "text, answer, expected",
    [
        (r"<think>..</think>\boxed{3}", "3", 1.0),
        (r"<think>..</think>\boxed{3}", "4", 0.0),
        (r"\boxed{3}", "3", 1.0),  # accuracy does not require the format
        (r"\boxed{4} no wait \boxed{3}", "3", 1.0),  # the last box counts
        (r"\boxed{3} no wait \boxed{4}", "3", 0.0),
        ("the answer is 3", "3", 0.0),  # unboxed answers do not count
        (r"\boxed{\text{Red}}", "red", 1.0),
        (r"\boxed{2.0}", "2", 1.0),
        (r"\boxed{3", "3", 0.0),
        (r"\boxed{}", "", 0.0),
        (r"<think>..</think>\boxed{(B)}", r"\boxed{B}", 1.0),  # ViRL39K-style ground truth
    ],
)
def test_accuracy_reward(text, answer, expected):
    assert accuracy_reward(text, answer) == expected


def test_verifiable_reward_mixes_parts_with_paper_weights():
    both = verifiable_reward(r"<think>two</think> \boxed{2}", "2")
    assert both == RewardBreakdown(reward=1.0, accuracy=1.0, format=1.0)
    fmt_only = verifiable_reward(r"<think>two</think> \boxed{3}", "2")
    assert fmt_only == RewardBreakdown(reward=0.1, accuracy=0.0, format=1.0)
    acc_only = verifiable_reward(r"\boxed{2}", "2")
    assert acc_only.accuracy == 1.0 and acc_only.format == 0.0
    assert acc_only.reward == pytest.approx(0.9, abs=1e-15)
    neither = verifiable_reward("2", "2")
    assert neither == RewardBreakdown(reward=0.0, accuracy=0.0, format=0.0)


def test_verifiable_reward_custom_weights():
    r = verifiable_reward(r"\boxed{2}", "2", accuracy_weight=1.0, format_weight=0.0)
    assert r.reward == 1.0
    r = verifiable_reward(r"<think>x</think>\boxed{1}", "2", accuracy_weight=0.5,
                          format_weight=0.5)
    assert r.reward == 0.5


def test_verifiable_rewards_batch():
    out = verifiable_rewards([r"<think>a</think>\boxed{1}", r"\boxed{2}", "none"],
                             ["1", "3", "x"])
    assert [o.reward for o in out] == pytest.approx([1.0, 0.0, 0.0])
    assert [o.format for o in out] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(accuracy_weight=-0.1), ValueError, "accuracy_weight"),
    (dict(format_weight=float("nan")), ValueError, "format_weight"),
    (dict(format_weight=float("inf")), ValueError, "format_weight"),
    (dict(accuracy_weight="0.9"), TypeError, "accuracy_weight"),
    (dict(format_weight=True), TypeError, "format_weight"),
])
def test_bad_weights_are_rejected_by_name(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        verifiable_reward(r"\boxed{1}", "1", **kwargs)


def test_bad_inputs_are_rejected_by_name():
    with pytest.raises(TypeError, match="text"):
        extract_boxed(None)
    with pytest.raises(TypeError, match="answer"):
        accuracy_reward(r"\boxed{1}", 1)
    with pytest.raises(TypeError, match="text"):
        format_reward(b"<think></think>")
    with pytest.raises(ValueError, match="answers"):
        verifiable_rewards(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="texts"):
        verifiable_rewards("ab", "ab")


def test_the_grading_worker_leaves_a_clean_exit():
    """The math-verify worker process (used off the main thread) is shut down before the
    interpreter tears itself down; left to its weakref callback it printed
    "Exception ignored ... 'NoneType' object has no attribute 'util'" after a good run."""
    import subprocess
    import sys

    code = ("import threading\nimport reference_impl.loop.trainer\n"
            "from reference_impl.data.rewards import answers_match\n"
            "out = []\nt = threading.Thread(target=lambda: out.append(answers_match('x=5', '5')))\n"
            "t.start(); t.join(); assert out == [True]\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
