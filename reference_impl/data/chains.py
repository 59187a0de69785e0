"""A synthetic visual-reasoning task in PGPO's regime: sparse perception inside a chain.

PGPO's argument (Ye et al., 2026, Sec. 3 and Thm. E.1) concerns long responses in which
most tokens follow linguistic priors and a few read the image. :class:`ChainCountTask`
builds exactly that on a CPU budget. The image is a grid of coloured squares; the
question asks for the total number of squares of two (or more) named colours::

    How many red and blue squares are there together?
    <think>Let me count. I see red: 3. the blue count is 1. So 3+1=4.</think> \\boxed{4}

* **Perception tokens** are the counts stated for each colour: only the image decides them.
  Every phrasing names the colour before its count, so the count is read, not planned.
* **Language tokens** (the opener, the phrasing and order of each statement, the
  arithmetic template) are drawn at random for every reference chain, so after a
  warm-up they keep entropy that has nothing to do with the reward.
* **Reasoning tokens** (the sum and the boxed answer) follow from the stated counts by
  text alone.

The warm-up must teach the format without the answer table: with probability
``warmup_noise`` each stated count in the reference chain (:attr:`Example.reference`) is
replaced by a different one, and the arithmetic follows the stated counts. A model that
imitates these chains is consistent but perceives unreliably; reward can then rise only
by reading the image better, which is what RL has to do.

Answers are balanced: the total is drawn uniformly from its range first and split into
counts afterwards; the question text depends only on the colours asked about, drawn
independently of the answer. A policy that ignores the image therefore answers at chance
(``1 / len(answer_set)``), which the tests check.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from reference_impl.data.examples import Example, ExampleSampler
from reference_impl.data.synthetic import COLORS

__all__ = ["ChainCountTask", "chain_facts", "perception_accuracy", "perception_token_mask"]

_SPLITS = {"train": 0, "heldout": 1}
_BACKGROUND = (255, 255, 255)
_DISTRACTOR = (130, 130, 130)  # grey squares: present, never asked about

_OPENERS = ("", "Let me count. ", "I look at the grid. ", "Counting by colour. ")
_FACT_PHRASES = ("{c}: {n}.", "I see {c}: {n}.", "the {c} count is {n}.", "{c} squares: {n}.")
_SUM_PHRASES = ("So {expr}={total}.", "{expr}={total}.", "Total {expr}={total}.")
_FILLERS = ("Okay.", "Let me see.", "Hmm, wait.", "Next.", "I check it again.",
            "That seems right.", "Careful now.", "Fine.")
"""Statements of pure language (no colour, no number) that ``filler`` adds to a chain."""

# Parses a stated fact back out of a response, for every fact phrase above and those of
# the spatial, row-order and bar tasks (reference_impl/data/visual_tasks.py: "row: 2.", "the
# column is 3.", "the red row is 1.", "red row: 1.", "the red bar is 4.", "red bar: 4."),
# whose facts this module reads as well.
_FACT_PATTERNS = (r"{c}: (\d+)\.", r"the {c}(?: count| bar| row)? is (\d+)\.",
                  r"{c} (?:squares|bar|row): (\d+)\.")


def _compositions(total: int, parts: int, low: int, high: int) -> list[tuple[int, ...]]:
    """All ``parts``-tuples of ints in ``[low, high]`` summing to ``total``."""
    if parts == 1:
        return [(total,)] if low <= total <= high else []
    return [(first,) + rest for first in range(low, high + 1)
            for rest in _compositions(total - first, parts - 1, low, high)]


class ChainCountTask(ExampleSampler):
    """Count squares per colour on a grid, then add: perception steps inside a chain.

    Example ``index`` of a split is a pure function of ``(seed, split, index)``.

    Args:
      seed: base seed.
      facts: how many colours the question asks about (2 or 3): the number of
        perception steps of a chain.
      max_count: largest count of one colour (counts are in ``[1, max_count]``).
      distractors: largest number of grey squares added that no question asks about.
      warmup_noise: probability that a stated count in the reference chain is wrong.
      filler: statements of pure language ("Okay.", "Let me see.", ...) added to each
        reference chain at random places among its facts: the language share of a
        response, the axis along which Thm. E.1 says PGPO's gain grows.
      image_size: side of the square RGB image in pixels.
      split: ``"train"`` or ``"heldout"``.
      size: number of examples.
    """

    def __init__(self, seed: int = 0, *, facts: int = 2, max_count: int = 4,
                 distractors: int = 1, warmup_noise: float = 0.3, filler: int = 0,
                 image_size: int = 112, split: str = "train", size: int = 100_000):
        for name, value, low in (("seed", seed, 0), ("facts", facts, 2),
                                 ("max_count", max_count, 2), ("distractors", distractors, 0),
                                 ("filler", filler, 0),
                                 ("image_size", image_size, 56), ("size", size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if facts > len(COLORS):
            raise ValueError(f"facts: at most {len(COLORS)} colours exist, got {facts}")
        if not (isinstance(warmup_noise, (int, float)) and 0.0 <= warmup_noise < 1.0):
            raise ValueError(f"warmup_noise: expected a float in [0, 1), got {warmup_noise!r}")
        if split not in _SPLITS:
            raise ValueError(f"split: expected one of {tuple(_SPLITS)}, got {split!r}")
        self.grid = math.ceil(math.sqrt(facts * max_count + distractors))
        self.seed, self.facts, self.max_count = seed, facts, max_count
        self.distractors, self.warmup_noise = distractors, float(warmup_noise)
        self.filler = filler
        self.image_size, self.split, self.size = image_size, split, size
        self._seed, self._shuffle = seed, False  # examples are already i.i.d.

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(t) for t in range(self.facts, self.facts * self.max_count + 1))

    def heldout(self, size: int = 256) -> "ChainCountTask":
        """The held-out split with the same settings."""
        return ChainCountTask(self.seed, facts=self.facts, max_count=self.max_count,
                              distractors=self.distractors, warmup_noise=self.warmup_noise,
                              filler=self.filler, image_size=self.image_size,
                              split="heldout", size=size)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"ChainCountTask(seed={self.seed}, facts={self.facts}, "
                f"max_count={self.max_count}, distractors={self.distractors}, "
                f"warmup_noise={self.warmup_noise}, filler={self.filler}, "
                f"split={self.split!r}, size={self.size})")

    def __getitem__(self, index: int) -> Example:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected int, got {type(index).__name__}")
        index = int(index) + (self.size if int(index) < 0 else 0)
        if not 0 <= index < self.size:
            raise IndexError(f"index: {index} out of range for size {self.size}")
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 7])
        names = list(COLORS)
        colours = [names[i] for i in rng.permutation(len(names))[:self.facts]]
        total = int(rng.integers(self.facts, self.facts * self.max_count + 1))
        options = _compositions(total, self.facts, 1, self.max_count)
        counts = dict(zip(colours, options[int(rng.integers(len(options)))]))
        image = self._draw(rng, counts)
        question = ("How many " + " and ".join(colours)
                    + " squares are there together? Answer with a number.")
        return Example(image=image, question=question, answer=str(total), task="chain",
                       id=f"chain-{self.split}-{self.seed}-{index}",
                       reference=self._reference(rng, counts), facts=counts)

    def _draw(self, rng: np.random.Generator, counts: dict[str, int]) -> Image.Image:
        s, g = self.image_size, self.grid
        image = Image.new("RGB", (s, s), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        fills = [COLORS[c] for c, n in counts.items() for _ in range(n)]
        fills += [_DISTRACTOR] * int(rng.integers(self.distractors + 1))
        cell = s / g
        half = cell * 0.32
        for cell_index, fill in zip(rng.permutation(g * g), fills):
            row, col = divmod(int(cell_index), g)
            cx, cy = (col + 0.5) * cell, (row + 0.5) * cell
            draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill)
        return image

    def _reference(self, rng: np.random.Generator, counts: dict[str, int]) -> str:
        """A reference chain with random wording and order; each stated count is wrong
        with probability ``warmup_noise``, and the arithmetic follows the stated counts.
        ``filler`` statements of pure language go at random places among the stated
        facts (drawn last, so ``filler=0`` draws exactly what it did before)."""
        stated = {}
        for colour, n in counts.items():
            if rng.random() < self.warmup_noise:
                wrong = [k for k in range(1, self.max_count + 1) if k != n]
                n = wrong[int(rng.integers(len(wrong)))]
            stated[colour] = n
        order = [list(stated)[i] for i in rng.permutation(len(stated))]
        steps = [_FACT_PHRASES[int(rng.integers(len(_FACT_PHRASES)))].format(c=c, n=stated[c])
                 for c in order]
        total = sum(stated.values())
        expr = "+".join(str(stated[c]) for c in order)
        summed = _SUM_PHRASES[int(rng.integers(len(_SUM_PHRASES)))].format(expr=expr, total=total)
        opener = _OPENERS[int(rng.integers(len(_OPENERS)))]
        for _ in range(self.filler):
            steps.insert(int(rng.integers(len(steps) + 1)),
                         _FILLERS[int(rng.integers(len(_FILLERS)))])
        return f"<think>{opener}{' '.join(steps)} {summed}</think> \\boxed{{{total}}}"


def chain_facts(text: str, colours: Sequence[str]) -> dict[str, int | None]:
    """The value stated for each fact name (a colour; ``row``/``column`` in the spatial
    task) in a response (``None`` where none is stated)."""
    found: dict[str, int | None] = {}
    for c in colours:
        value = None
        for pattern in _FACT_PATTERNS:
            m = re.search(pattern.format(c=re.escape(c)), text)
            if m:
                value = int(m.group(1))
                break
        found[c] = value
    return found


def perception_accuracy(text: str, facts: dict[str, int]) -> float:
    """Fraction of the image facts that a response states correctly (0 when unstated)."""
    stated = chain_facts(text, list(facts))
    return sum(stated[c] == n for c, n in facts.items()) / len(facts)


def perception_token_mask(tokens: Sequence[str], colours: Sequence[str]) -> list[bool]:
    """Which of a response's decoded ``tokens`` state a count read off the image: the
    digit tokens that directly follow a fact phrase's colour (``red: 3``, ``the red count
    is 3``, ``red squares: 3``; ``the red bar is 3``, ``red bar: 3``, ``the red row is 1``,
    ``red row: 1``, ``the row is 2`` in the tasks of :mod:`reference_impl.data.visual_tasks`)."""
    names = "|".join(re.escape(c) for c in colours)
    before = re.compile(rf"(?:(?:{names})(?: squares| bar| row)?:"
                        rf"|the (?:{names})(?: count| bar| row)? is) ?$")
    text, mask = "", []
    for token in tokens:
        mask.append(bool(token.strip()) and token.strip().isdigit()
                    and before.search(text + token[:len(token) - len(token.lstrip())]) is not None)
        text += token
    return mask
