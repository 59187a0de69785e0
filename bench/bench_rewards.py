"""Time per call of the verifiable reward (reference_impl/data/rewards.py), by grading route.

Not a test: it prints a markdown table and asserts nothing about speed. Rewards are
computed for every rollout response, so their cost adds to every RL step.

Routes, timed side by side in one run (``<think>..</think>`` then a boxed answer). Each
route is timed twice: ``cold``, with the parse cache emptied before every call (both
answers parsed: the upper bound), and ``cached``, where repeated answers hit the cache
(in training the G responses of a group share the ground truth, and short answers
repeat):

- ``text/rational``: answers decided by the normaliser and exact rationals (``2`` vs
  ``2.0``, ``(B)`` vs ``B``); math-verify is not called;
- ``math-verify equal``: answers only math-verify finds equal (``x=5`` vs ``5``);
- ``math-verify unequal``: wrong answers that reach math-verify (``x=6`` vs ``5``).

Usage::

    python bench/bench_rewards.py           # 2,000 calls per route
    python bench/bench_rewards.py --quick   # 100 calls per route
"""

from __future__ import annotations

import argparse
import time

from reference_impl.data import rewards
from reference_impl.data.rewards import verifiable_reward

ROUTES = {
    "text/rational": [("2.0", "2"), ("(B)", "B"), (r"\frac{3}{4}", "0.75"), ("Red", "red")],
    "math-verify equal": [(r"30^\circ", "30"), ("x=5", "5"), (r"50\%", "50"),
                          (r"\pi/2", r"\frac{\pi}{2}"), (r"\frac{\sqrt3}{2}", r"\frac{\sqrt{3}}{2}")],
    "math-verify unequal": [("x=6", "5"), (r"\pi/3", r"\frac{\pi}{2}"), (r"40\%", "50"),
                            (r"\sqrt{2}", r"\frac{\sqrt{3}}{2}")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 calls per route")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    calls = 100 if args.quick else args.calls
    for pairs in ROUTES.values():  # warm up: imports, sympy caches, the gold cache
        for pred, gold in pairs:
            verifiable_reward(rf"<think>w</think> \boxed{{{pred}}}", gold)
    times = {(name, cold): 0.0 for name in ROUTES for cold in (True, False)}
    for i in range(calls):  # routes and cache states interleaved in every round
        for (name, cold) in times:
            pred, gold = ROUTES[name][i % len(ROUTES[name])]
            text = f"<think>step {i}</think> so \\boxed{{{pred}}}"
            if cold:
                rewards._parse.cache_clear()
            start = time.perf_counter()
            verifiable_reward(text, gold)
            times[name, cold] += time.perf_counter() - start
    base = times["text/rational", True] / calls
    print(f"{calls} calls per cell\n")
    print("| route | cold ms/call | cached ms/call | cold ratio to text/rational |")
    print("|---|---|---|---|")
    for name in ROUTES:
        cold, warm = times[name, True] / calls, times[name, False] / calls
        print(f"| {name} | {cold * 1e3:.3f} | {warm * 1e3:.3f} | {cold / base:.1f} |")


if __name__ == "__main__":
    main()
