"""Six more synthetic tasks in the chain task's regime.

:class:`~reference_impl.data.chains.ChainCountTask` asks for a number of things (counting).
The tasks here ask the image something of a different nature, with the same recipe:
perception steps stated inside a short chain of thought, then a step that follows from
the stated facts by text alone, noisy warm-up references, balanced answers, and a
question text drawn independently of the answer (so a policy that ignores the image is
at chance, ``1 / len(answer_set)``; the tests check both)::

    spatial: In which cell is the red square? ...
      <think>Looking for the red square. row: 2. the column is 3. So 3*(2-1)+3=6.</think> \\boxed{6}
    rows:    How many rows higher is the red square than the blue square? ...
      <think>Reading the rows. red: 1. the blue row is 3. So 3-1=2.</think> \\boxed{2}
    bars:    How much taller is the red bar than the blue bar? ...
      <think>red: 4. the blue bar is 1. So 4-1=3.</think> \\boxed{3}
    region:  How many squares are in the top half of the picture? ...
      <think>bottom: 3. the top count is 2. So the top half has 2.</think> \\boxed{2}
    lengths: How much longer is the top bar than the bottom bar? ...
      <think>top: 3. the bottom bar is 1. So 3-1=2.</think> \\boxed{2}
    length:  How long is the top bar? ...
      <think>bottom: 1. the top bar is 3. So the top one is 3.</think> \\boxed{3}

* :class:`GridPlaceTask` (``data.synthetic_task=spatial``): *where* a mark is, absolutely.
  One square of the named colour and some squares of other colours sit in the cells of a
  grid; the perception steps are the target's row and column.
* :class:`RowOrderTask` (``data.synthetic_task=rows``): *where* marks are, relative to each
  other. One square per row of a lattice; the perception steps are the rows of the two
  named squares, which (every row being filled) are their places counted from the top.
* :class:`BarDifferenceTask` (``data.synthetic_task=bars``): *how tall* things are. Bars of
  different colours stand on the bottom edge with a faint line at every unit of height;
  the perception steps are the heights of the two named bars.
* :class:`RegionCountTask` (``data.synthetic_task=region``): *where* marks are, by halves.
  Squares of any colour in the two halves of a framed picture; the perception steps are
  the two halves' counts.
* :class:`BarLengthTask` (``data.synthetic_task=lengths``): *how long* bars are, read by
  place. A horizontal bar chart with a top and a bottom bar; the perception steps are
  their lengths. :class:`OneBarLengthTask` (``data.synthetic_task=length``) asks the same
  chart one bar's length, the lengths drawn independently.

As in the chain task, the warm-up reference (:attr:`Example.reference`) states each fact
wrongly with probability ``warmup_noise`` and the last step follows the stated facts; the
true facts are :attr:`Example.facts` (``{"row": r, "column": c}`` or ``{colour: value}``),
which :func:`reference_impl.data.chains.perception_accuracy` reads back from a response.

All six export to files for the file loader with :mod:`reference_impl.data.export`
(``python -m reference_impl.data.export OUT.jsonl --size N``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reference_impl.data.examples import Example, ExampleSampler
from reference_impl.data.synthetic import COLORS

__all__ = ["TASKS", "BarDifferenceTask", "BarLengthTask", "GridPlaceTask", "OneBarLengthTask",
           "RegionCountTask", "RowOrderTask"]

_SPLITS = {"train": 0, "heldout": 1}
_BACKGROUND = (255, 255, 255)
_GREY = (130, 130, 130)
_GRID_LINE = (200, 200, 200)


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an int {bound}, got {value!r}")


def _check_common(seed, warmup_noise, image_size, split, size) -> None:
    _check_int("seed", seed, 0)
    _check_int("image_size", image_size, 56)
    _check_int("size", size, 1)
    if isinstance(warmup_noise, bool) or not isinstance(warmup_noise, (int, float)) \
            or not 0.0 <= warmup_noise < 1.0:
        raise ValueError(f"warmup_noise: expected a float in [0, 1), got {warmup_noise!r}")
    if split not in _SPLITS:
        raise ValueError(f"split: expected one of {tuple(_SPLITS)}, got {split!r}")


def _stated(rng: np.random.Generator, true: int, low: int, high: int, noise: float) -> int:
    """``true``, or with probability ``noise`` another value of ``[low, high]`` (uniform)."""
    if rng.random() < noise:
        wrong = [k for k in range(low, high + 1) if k != true]
        return wrong[int(rng.integers(len(wrong)))]
    return true


def _signed_differences(high: int) -> list[int]:
    """The answer set of a signed difference of two values of ``[1, high]``: ``-(high-1)
    .. -1, 1 .. high-1`` (zero excluded: the two named things always differ)."""
    return [d for d in range(1 - high, high) if d != 0]


def _pair_with_difference(rng: np.random.Generator, high: int) -> tuple[int, int, int]:
    """``(d, first, second)``: ``d`` uniform over :func:`_signed_differences`, then the
    pair of ``[1, high]`` with ``first - second = d``, its lower value uniform among those
    that fit. Signed, so the question does not tell which of the two is larger: each
    value's distribution is the same for the first and the second named thing (a policy
    that reads only the question cannot guess either better than the symmetric prior)."""
    choices = _signed_differences(high)
    d = choices[int(rng.integers(len(choices)))]
    low = int(rng.integers(1, high - abs(d) + 1))
    return (d, low + d, low) if d > 0 else (d, low, low - d)


def _stated_facts(rng: np.random.Generator, facts: dict[str, int], *, high: int,
                  noise: float, phrases: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """The facts as a reference chain states them (each wrong with probability ``noise``,
    uniformly among the other values of ``[1, high]``), in the order stated, and one
    sentence per fact in that random order, each in a random one of ``phrases``."""
    stated = {c: _stated(rng, n, 1, high, noise) for c, n in facts.items()}
    order = [list(stated)[i] for i in rng.permutation(len(stated))]
    steps = [phrases[int(rng.integers(len(phrases)))].format(c=c, n=stated[c]) for c in order]
    return {c: stated[c] for c in order}, steps


def _subtraction_chain(rng: np.random.Generator, facts: dict[str, int], minuend: str,
                       subtrahend: str, *, high: int, noise: float, openers: tuple[str, ...],
                       fact_phrases: tuple[str, ...], last_phrases: tuple[str, ...]) -> str:
    """A reference chain that states both facts (:func:`_stated_facts`), then subtracts the
    stated ``subtrahend`` from the stated ``minuend``."""
    stated, steps = _stated_facts(rng, facts, high=high, noise=noise, phrases=fact_phrases)
    a, b = stated[minuend], stated[subtrahend]
    last = last_phrases[int(rng.integers(len(last_phrases)))].format(a=a, b=b, d=a - b)
    opener = openers[int(rng.integers(len(openers)))]
    return f"<think>{opener}{' '.join(steps)} {last}</think> \\boxed{{{a - b}}}"


def _sum_chain(rng: np.random.Generator, facts: dict[str, int], *, high: int, noise: float,
               openers: tuple[str, ...], fact_phrases: tuple[str, ...],
               last_phrases: tuple[str, ...]) -> str:
    """A reference chain that states every fact (:func:`_stated_facts`), then adds the
    stated values in the order stated (``last_phrases`` take ``{expr}`` and ``{total}``)."""
    stated, steps = _stated_facts(rng, facts, high=high, noise=noise, phrases=fact_phrases)
    expr, total = "+".join(str(n) for n in stated.values()), sum(stated.values())
    last = last_phrases[int(rng.integers(len(last_phrases)))].format(expr=expr, total=total)
    opener = openers[int(rng.integers(len(openers)))]
    return f"<think>{opener}{' '.join(steps)} {last}</think> \\boxed{{{total}}}"


def _asked_chain(rng: np.random.Generator, facts: dict[str, int], asked: str, *, high: int,
                 noise: float, openers: tuple[str, ...], fact_phrases: tuple[str, ...],
                 last_phrases: tuple[str, ...]) -> str:
    """A reference chain that states every fact (:func:`_stated_facts`), then the stated
    value of ``asked`` (``last_phrases`` take ``{asked}`` and ``{n}``), which it boxes."""
    stated, steps = _stated_facts(rng, facts, high=high, noise=noise, phrases=fact_phrases)
    opener = openers[int(rng.integers(len(openers)))]
    n = stated[asked]
    last = last_phrases[int(rng.integers(len(last_phrases)))].format(asked=asked, n=n)
    return f"<think>{opener}{' '.join(steps)} {last}</think> \\boxed{{{n}}}"


def _index(index, size: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index: expected int, got {type(index).__name__}")
    index = int(index) + (size if int(index) < 0 else 0)
    if not 0 <= index < size:
        raise IndexError(f"index: {index} out of range for size {size}")
    return index


class _VisualTask(ExampleSampler):
    """What the tasks of this module share: a seed, a split, a size, the warm-up noise and the
    image size, checked once; each task adds its own ``settings`` (its keyword arguments,
    which :meth:`heldout` and the repr pass on)."""

    task: str

    def _setup(self, seed, warmup_noise, image_size, split, size, **settings) -> None:
        _check_common(seed, warmup_noise, image_size, split, size)
        self.seed, self.warmup_noise, self.image_size = seed, float(warmup_noise), image_size
        self.split, self.size, self._settings = split, size, settings
        for name, value in settings.items():
            setattr(self, name, value)
        self._seed, self._shuffle = seed, False  # examples are already i.i.d.

    def heldout(self, size: int = 256):
        """The held-out split with the same settings."""
        return type(self)(self.seed, **self._settings, warmup_noise=self.warmup_noise,
                          image_size=self.image_size, split="heldout", size=size)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        settings = "".join(f"{k}={v}, " for k, v in self._settings.items())
        return (f"{type(self).__name__}(seed={self.seed}, {settings}"
                f"warmup_noise={self.warmup_noise}, split={self.split!r}, size={self.size})")


class _OpeningTask(_VisualTask):
    """A task whose train stream may open with ``opening`` examples asking a total about
    the same pictures (:class:`BarDifferenceTask`, :class:`RegionCountTask`,
    :class:`BarLengthTask`, :class:`OneBarLengthTask`): positions in the sampled stream, so
    a resumed run continues the same curriculum; ``self[i]`` and the held-out split never
    open. A subclass writes ``_example(index, *, opening)``."""

    def _setup_opening(self, opening: int, split: str) -> None:
        _check_int("opening", opening, 0)
        if opening and split != "train":
            raise ValueError(f"opening: only the train split opens with the total, got "
                             f"opening={opening} for split={split!r}")
        self.opening = opening

    def __getitem__(self, index: int) -> Example:
        return self._example(index, opening=False)

    def opening_example(self, index: int) -> Example:
        """Example ``index``'s picture asked the opening's question (the total)."""
        return self._example(index, opening=True)

    def _example_at(self, position: int, index: int) -> Example:
        return self._example(index, opening=position < self.opening)

    def _example(self, index: int, *, opening: bool) -> Example:
        raise NotImplementedError

    _OPENING_ID = "-total"
    """What an opening example's id adds to the id of the same picture's own question."""

    def _opening_reference(self, rng: np.random.Generator, facts: dict[str, int], *,
                           high: int) -> str:
        """The opening's reference chain (:func:`_sum_chain` in the task's phrasing)."""
        return _sum_chain(rng, facts, high=high, noise=self.warmup_noise,
                          openers=self._OPENERS, fact_phrases=self._FACT_PHRASES,
                          last_phrases=self._SUM_PHRASES)

    def _build(self, index: int, *, opening: bool, image: Image.Image, question: str,
               answer: int, reference: str, facts: dict[str, int]) -> Example:
        """Example ``index`` (an opening one's id marked with :attr:`_OPENING_ID`)."""
        return Example(image=image, question=question, answer=str(answer), task=self.task,
                       id=f"{self.task}-{self.split}-{self.seed}-{index}"
                          + (self._OPENING_ID if opening else ""),
                       reference=reference, facts=facts)

    def __repr__(self) -> str:
        opening = f", opening={self.opening}" if self.opening else ""
        return super().__repr__()[:-1] + opening + ")"


class GridPlaceTask(_VisualTask):
    """Where is the square of the named colour? Answer its cell number (row-major, 1-based).

    One square of the asked colour sits in a cell drawn uniformly from the ``grid x grid``
    cells (so the answer is uniform over ``1 .. grid**2``); 1 to ``distractors`` squares
    of the other colours (grey included) fill other cells. The asked colour is drawn
    independently of the cell. The reference chain states the row and the column (each
    wrong with probability ``warmup_noise``), then computes the cell number from them.
    Example ``index`` of a split is a pure function of ``(seed, split, index)``.

    Args:
      seed: base seed.
      grid: cells per side (2-5).
      distractors: largest number of squares of other colours (>= 1, < grid**2).
      warmup_noise: probability that a stated row or column in the reference is wrong.
      image_size: side of the square RGB image in pixels.
      split: ``"train"`` or ``"heldout"``.
      size: number of examples.
    """

    task = "spatial"

    def __init__(self, seed: int = 0, *, grid: int = 3, distractors: int = 3,
                 warmup_noise: float = 0.3, image_size: int = 112, split: str = "train",
                 size: int = 100_000):
        _check_int("grid", grid, 2, 5)
        _check_int("distractors", distractors, 1, grid * grid - 1)
        self._setup(seed, warmup_noise, image_size, split, size, grid=grid,
                    distractors=distractors)

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(k) for k in range(1, self.grid * self.grid + 1))

    def __getitem__(self, index: int) -> Example:
        index = _index(index, self.size)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 11])
        g = self.grid
        names = list(COLORS)
        colour = names[int(rng.integers(len(names)))]
        cell = int(rng.integers(g * g))
        row, column = divmod(cell, g)
        others = [COLORS[c] for c in names if c != colour] + [_GREY]
        n_other = int(rng.integers(1, self.distractors + 1))
        other_cells = [c for c in rng.permutation(g * g).tolist() if c != cell][:n_other]
        fills = [(cell, COLORS[colour])] + [(c, others[int(rng.integers(len(others)))])
                                            for c in other_cells]
        image = Image.new("RGB", (self.image_size, self.image_size), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        side = self.image_size / g
        half = side * 0.32
        for c, fill in fills:
            r, k = divmod(c, g)
            cx, cy = (k + 0.5) * side, (r + 0.5) * side
            draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill)
        facts = {"row": row + 1, "column": column + 1}
        question = (f"In which cell is the {colour} square? The cells of the {g}x{g} grid "
                    f"are numbered 1 to {g * g} row by row from the top left. "
                    "Answer with a number.")
        return Example(image=image, question=question, answer=str(cell + 1), task=self.task,
                       id=f"{self.task}-{self.split}-{self.seed}-{index}",
                       reference=self._reference(rng, colour, facts), facts=facts)

    _OPENERS = ("", "Looking for the {colour} square. ", "I look at the grid. ",
                "Finding the {colour} square. ")
    _FACT_PHRASES = ("{c}: {n}.", "the {c} is {n}.")
    _LAST_PHRASES = ("So {g}*({r}-1)+{k}={n}.", "{g}*({r}-1)+{k}={n}.",
                     "Cell {g}*({r}-1)+{k}={n}.")

    def _reference(self, rng: np.random.Generator, colour: str, facts: dict[str, int]) -> str:
        stated, steps = _stated_facts(rng, facts, high=self.grid, noise=self.warmup_noise,
                                      phrases=self._FACT_PHRASES)
        r, k = stated["row"], stated["column"]
        n = self.grid * (r - 1) + k
        last = self._LAST_PHRASES[int(rng.integers(len(self._LAST_PHRASES)))].format(
            g=self.grid, r=r, k=k, n=n)
        opener = self._OPENERS[int(rng.integers(len(self._OPENERS)))].format(colour=colour)
        return f"<think>{opener}{' '.join(steps)} {last}</think> \\boxed{{{n}}}"


class RowOrderTask(_VisualTask):
    """How many rows higher is one named square than another? Read two rows, subtract.

    The image is a ``grid x grid`` lattice of square cells with one square in every row,
    each of its own colour, in a column drawn at random. Since every row is filled, a
    square's row is also its place among the squares counted from the top: an order that
    an autoregressive VLM reads without knowing where the image's edge is (its image tokens
    come in reading order, so a square's token sees which squares' tokens came before it).
    :class:`GridPlaceTask`'s absolute row and column need that edge. At the default 112 px
    and ``grid=4`` a cell is one of Qwen2.5-VL's 28-px image tokens (patch 14, merge 2).
    The tiny model built from a config learns neither task in its warm-up (no colour-blind
    feature of the picture predicts a row; docs/evidence.md): a task for a real checkpoint.

    The question names two squares and asks how many rows higher the first is than the
    second, negative if it is lower: the answer is drawn uniformly from ``±1 .. ±(grid-1)``
    (the answer set), then the two rows uniformly among those that fit; the other colours
    fill the other rows in random order. The colours asked about are drawn independently
    of the rows. The reference chain states both rows (each wrong with probability
    ``warmup_noise``), then subtracts them.
    Example ``index`` of a split is a pure function of ``(seed, split, index)``.

    Args:
      seed: base seed.
      grid: rows and columns of the lattice, and so the number of squares (3-4: one colour
        per square).
      warmup_noise: probability that a stated row in the reference is wrong.
      image_size: side of the square RGB image in pixels.
      split: ``"train"`` or ``"heldout"``.
      size: number of examples.
    """

    task = "rows"

    def __init__(self, seed: int = 0, *, grid: int = 4, warmup_noise: float = 0.3,
                 image_size: int = 112, split: str = "train", size: int = 100_000):
        _check_int("grid", grid, 3, len(COLORS))
        self._setup(seed, warmup_noise, image_size, split, size, grid=grid)

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(d) for d in _signed_differences(self.grid))

    def __getitem__(self, index: int) -> Example:
        index = _index(index, self.size)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 17])
        g = self.grid
        names = list(COLORS)
        colours = [names[i] for i in rng.permutation(len(names))[:g]]
        first, second = colours[0], colours[1]  # colours is already a random order
        diff, second_row, first_row = _pair_with_difference(rng, g)  # rows count downwards
        rows = {first: first_row, second: second_row}
        free = [r for r in range(1, g + 1) if r not in rows.values()]
        for c, r in zip(colours[2:], rng.permutation(free).tolist()):
            rows[c] = int(r)
        columns = {c: int(rng.integers(g)) for c in colours}
        image = Image.new("RGB", (self.image_size, self.image_size), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        side = self.image_size / g
        half = side * 0.32
        for c in colours:
            cx, cy = (columns[c] + 0.5) * side, (rows[c] - 0.5) * side
            draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=COLORS[c])
        facts = {first: first_row, second: second_row}
        question = (f"The {g} squares are in {g} different rows, numbered from the top. How "
                    f"many rows higher is the {first} square than the {second} square? "
                    "Answer with a number, negative if it is lower.")
        return Example(image=image, question=question, answer=str(diff), task=self.task,
                       id=f"{self.task}-{self.split}-{self.seed}-{index}",
                       reference=_subtraction_chain(
                           rng, facts, second, first, high=g, noise=self.warmup_noise,
                           openers=self._OPENERS, fact_phrases=self._FACT_PHRASES,
                           last_phrases=self._LAST_PHRASES),
                       facts=facts)

    _OPENERS = ("", "Reading the rows. ", "I look at the grid. ", "From the top. ")
    _FACT_PHRASES = ("{c}: {n}.", "the {c} row is {n}.", "{c} row: {n}.")
    _LAST_PHRASES = ("So {a}-{b}={d}.", "{a}-{b}={d}.", "Difference {a}-{b}={d}.")


class BarDifferenceTask(_OpeningTask):
    """How much taller is one named bar than another? Read two heights, subtract.

    The image is a ``max_height x max_height`` lattice of square cells: ``bars`` bars of
    distinct colours stand on its bottom edge in distinct columns (drawn at random), each
    ``1 .. max_height`` cells tall, with a faint line at every unit of height. A unit of
    height is one cell on purpose: at the default 112 px and ``max_height=4`` a cell is
    exactly one of Qwen2.5-VL's 28-px image tokens (patch 14, merge 2), so a bar's height
    is the number of tokens of its colour, the count the chain task teaches.

    The question names two bars and asks how much taller the first is than the second,
    negative if it is shorter: the difference is drawn uniformly from ``±1 .. ±(max_height
    - 1)`` (the answer set), then the two heights uniformly among those that fit; the other
    bars get any height. The colours asked about are drawn independently of the heights.
    The reference chain states both heights (each wrong with probability
    ``warmup_noise``), then subtracts them.
    Example ``index`` of a split is a pure function of ``(seed, split, index)``.

    **The opening.** Asked only differences, the tiny model built from a config never
    starts to look at the bars: no colour-blind feature of the picture predicts a
    difference, so no early gradient pays for attending to the image (docs/evidence.md).
    The total height of all bars is the picture's coloured area, predicted without
    telling colours apart: the way in that the chain task's sum of counts offers. With
    ``opening=N`` the first ``N`` examples that :meth:`sample` returns (positions in the
    stream, so a resumed run continues the same curriculum) ask "how tall are the red, the
    blue and the green bars together?" about the same picture (:meth:`opening_example`;
    the chain states every bar's height, then adds); every later one, and every
    ``self[i]``, asks the difference. The trainer sets ``N`` from ``data.opening_steps``
    warm-up steps. It makes the tiny model look, weakly: after 1,600 opening and 800
    difference steps its sampled answers are at or barely above chance, and after 1,600 +
    4,400 steps still at most what the bars' total allows (0.199-0.234 on three seeds,
    chance 1/6; docs/evidence.md).

    Args:
      seed: base seed.
      bars: number of bars (2-4, one colour each; at most ``max_height``).
      max_height: tallest possible bar in units, and the lattice's cells per side (3-9).
      warmup_noise: probability that a stated height in the reference is wrong.
      image_size: side of the square RGB image in pixels.
      split: ``"train"`` or ``"heldout"``.
      size: number of examples.
      opening: how many examples at the start of the sampled stream ask the total height
        (train split only; the held-out split never opens).
    """

    task = "bars"

    def __init__(self, seed: int = 0, *, bars: int = 3, max_height: int = 4,
                 warmup_noise: float = 0.3, image_size: int = 112, split: str = "train",
                 size: int = 100_000, opening: int = 0):
        _check_int("bars", bars, 2, len(COLORS))
        _check_int("max_height", max_height, 3, 9)
        if bars > max_height:
            raise ValueError(f"bars: at most max_height={max_height} bars fit side by side, "
                             f"got {bars}")
        self._setup(seed, warmup_noise, image_size, split, size, bars=bars,
                    max_height=max_height)
        self._setup_opening(opening, split)

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(d) for d in _signed_differences(self.max_height))

    def _example(self, index: int, *, opening: bool) -> Example:
        """The opening asks the total height of all the bars (the facts are every bar's
        height; the reference chain states each, then adds them)."""
        index = _index(index, self.size)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 13])
        names = list(COLORS)
        colours = [names[i] for i in rng.permutation(len(names))[:self.bars]]
        first, second = colours[0], colours[1]  # colours is already a random order
        h = self.max_height
        diff, first_height, second_height = _pair_with_difference(rng, h)
        heights = {first: first_height, second: second_height}
        for c in colours[2:]:
            heights[c] = int(rng.integers(1, h + 1))
        columns = sorted(rng.permutation(h)[:self.bars].tolist())
        slots = [colours[i] for i in rng.permutation(self.bars)]  # left-to-right order
        image = self._draw(dict(zip(slots, columns)), heights)
        if opening:  # every bar: the picture's whole coloured area is the answer
            facts = {c: heights[c] for c in colours}
            named = ", ".join(f"the {c}" for c in colours[:-1]) + f" and the {colours[-1]}"
            question = f"How tall are {named} bars together? Answer with a number."
            reference = self._opening_reference(rng, facts, high=h)
            answer = sum(facts.values())
        else:
            facts = {first: first_height, second: second_height}
            question = (f"How much taller is the {first} bar than the {second} bar? "
                        "Answer with a number, negative if it is shorter.")
            reference = _subtraction_chain(
                rng, facts, first, second, high=h, noise=self.warmup_noise,
                openers=self._OPENERS, fact_phrases=self._FACT_PHRASES,
                last_phrases=self._LAST_PHRASES)
            answer = diff
        return self._build(index, opening=opening, image=image, question=question,
                           answer=answer, reference=reference, facts=facts)

    def _draw(self, columns: dict[str, int], heights: dict[str, int]) -> Image.Image:
        """Each bar (colour -> lattice column) from the bottom edge up ``height`` cells,
        0.7 of a cell wide and centred in its column."""
        s = self.image_size
        cell = s / self.max_height
        image = Image.new("RGB", (s, s), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        for k in range(1, self.max_height):  # a faint line at every unit of height
            draw.line([(0, s - k * cell), (s - 1, s - k * cell)], fill=_GRID_LINE)
        for c, column in columns.items():
            x0 = (column + 0.15) * cell
            draw.rectangle([x0, s - heights[c] * cell, x0 + 0.7 * cell - 1, s - 1],
                           fill=COLORS[c])
        return image

    _OPENING_ID = "-sum"
    _OPENERS = ("", "Reading the bars. ", "I look at the chart. ", "Comparing heights. ")
    _FACT_PHRASES = ("{c}: {n}.", "the {c} bar is {n}.", "{c} bar: {n}.")
    _LAST_PHRASES = ("So {a}-{b}={d}.", "{a}-{b}={d}.", "Difference {a}-{b}={d}.")
    _SUM_PHRASES = ("So {expr}={total}.", "{expr}={total}.", "Together {expr}={total}.")


class RegionCountTask(_OpeningTask):
    """How many squares are in the top (bottom) half of the picture? Count in one half.

    The image is a ``grid x grid`` lattice of square cells inside a black frame; each half
    (top and bottom, or left and right with ``axis="cols"``) holds ``1 .. max_count``
    squares of random colours in random cells, the two counts drawn independently, so the
    answer (the asked half's count) is uniform over ``1 .. max_count`` whichever half is
    asked, and the question is drawn independently of the picture. At the default 112 px
    and ``grid=4`` a cell is one of Qwen2.5-VL's 28-px image tokens. The reference chain
    states both halves' counts (``top: 2. the bottom count is 3.``, each wrong with
    probability ``warmup_noise``), then the asked one. The facts are ``{"top": a,
    "bottom": b}`` (``{"left": .., "right": ..}``).
    Example ``index`` of a split is a pure function of ``(seed, split, index)``.

    **Where, not how many.** A model that counts all the squares and splits the total
    is right at most 7 times in 16 (at ``max_count=4``) without knowing where anything is; reading a half
    needs the place of each square. The tiny model built from a config reads it only late
    in a long warm-up opened with the total (docs/evidence.md).

    **The opening**, as :class:`BarDifferenceTask`'s: with ``opening=N`` the first ``N``
    examples that :meth:`sample` returns ask "How many squares are in the picture?" about
    the same picture (:meth:`opening_example`; the chain states both halves' counts, then
    adds). Asked only about a half, the tiny model never starts to look (no colour-blind
    feature predicts a half's count exactly); the total, the picture's coloured area, is
    the way in. The trainer sets ``N`` from ``data.opening_steps``.

    Args:
      seed: base seed.
      grid: cells per side of the lattice (even, 2-8).
      max_count: most squares in one half (2 .. ``grid * grid / 2``).
      axis: ``"rows"`` (top and bottom halves) or ``"cols"`` (left and right).
      warmup_noise: probability that a stated count in the reference is wrong.
      image_size: side of the square RGB image in pixels.
      split: ``"train"`` or ``"heldout"``.
      size: number of examples.
      opening: how many examples at the start of the sampled stream ask the total (train
        split only).
    """

    task = "region"
    HALVES = {"rows": ("top", "bottom"), "cols": ("left", "right")}
    FRAME = 3
    """Width in pixels of the black frame drawn around the picture."""

    def __init__(self, seed: int = 0, *, grid: int = 4, max_count: int = 4,
                 axis: str = "rows", warmup_noise: float = 0.3, image_size: int = 112,
                 split: str = "train", size: int = 100_000, opening: int = 0):
        _check_int("grid", grid, 2, 8)
        if grid % 2:
            raise ValueError(f"grid: must be even (two equal halves), got {grid}")
        _check_int("max_count", max_count, 2, grid * grid // 2)
        if axis not in self.HALVES:
            raise ValueError(f"axis: expected one of {tuple(self.HALVES)}, got {axis!r}")
        self._setup(seed, warmup_noise, image_size, split, size, grid=grid,
                    max_count=max_count, axis=axis)
        self._setup_opening(opening, split)

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(n) for n in range(1, self.max_count + 1))

    def _example(self, index: int, *, opening: bool) -> Example:
        """The opening asks the number of all the squares."""
        index = _index(index, self.size)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 19])
        halves = self.HALVES[self.axis]
        facts = {h: int(rng.integers(1, self.max_count + 1)) for h in halves}
        asked = halves[int(rng.integers(2))]
        image = self._draw(rng, facts)
        if opening:
            question = "How many squares are in the picture? Answer with a number."
            reference = self._opening_reference(rng, facts, high=self.max_count)
            answer = sum(facts.values())
        else:
            question = (f"How many squares are in the {asked} half of the picture? Answer "
                        "with a number.")
            reference = _asked_chain(rng, facts, asked, high=self.max_count,
                                     noise=self.warmup_noise, openers=self._OPENERS,
                                     fact_phrases=self._FACT_PHRASES,
                                     last_phrases=self._LAST_PHRASES)
            answer = facts[asked]
        return self._build(index, opening=opening, image=image, question=question,
                           answer=answer, reference=reference, facts=facts)

    def _draw(self, rng: np.random.Generator, counts: dict[str, int]) -> Image.Image:
        """``counts[h]`` squares (0.64 of a cell, random colours) in random cells of each
        half, and the frame."""
        s, g = self.image_size, self.grid
        cell = s / g
        image = Image.new("RGB", (s, s), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        names = list(COLORS)
        for k, h in enumerate(self.HALVES[self.axis]):
            cells = [(row, col) for row in range(g) for col in range(g)
                     if ((row if self.axis == "rows" else col) < g // 2) == (k == 0)]
            for j in rng.permutation(len(cells))[:counts[h]]:
                row, col = cells[int(j)]
                cx, cy, half = (col + 0.5) * cell, (row + 0.5) * cell, 0.32 * cell
                draw.rectangle([cx - half, cy - half, cx + half, cy + half],
                               fill=COLORS[names[int(rng.integers(len(names)))]])
        draw.rectangle([0, 0, s - 1, s - 1], outline=(0, 0, 0), width=self.FRAME)
        return image

    _OPENERS = ("", "Counting by halves. ", "I look at the picture. ", "Half by half. ")
    _FACT_PHRASES = ("{c}: {n}.", "the {c} count is {n}.", "{c} squares: {n}.")
    _LAST_PHRASES = ("So the {asked} half has {n}.", "The {asked} half: {n}.",
                     "So {n} in the {asked}.")
    _SUM_PHRASES = ("So {expr}={total}.", "{expr}={total}.", "Together {expr}={total}.")


class BarLengthTask(_OpeningTask):
    """How much longer is the top bar than the bottom bar? Read two lengths by place, subtract.

    A horizontal bar chart: the image is a ``max_length x max_length`` lattice of square
    cells inside a black frame, with a faint line at every unit of length; one bar grows
    from the left edge in a random row of the top half, another in a random row of the
    bottom half, each ``1 .. max_length`` cells long and of a random colour (the two
    differ). At the default 112 px and ``max_length=4`` a cell is one of Qwen2.5-VL's 28-px
    image tokens (patch 14, merge 2), so a bar's length is the number of its tokens.

    The question names the two bars by their place, "the top bar" and "the bottom bar", in
    an order drawn at random, and asks how much longer the first named is than the second,
    negative if it is shorter: the difference is drawn uniformly from ``±1 .. ±(max_length
    - 1)`` (the answer set), then the two lengths uniformly among those that fit
    (:func:`_pair_with_difference`), so each bar's length has the same distribution
    whichever is named first. The reference chain states both lengths (``top: 3. the
    bottom bar is 1.``, each wrong with probability ``warmup_noise``), then subtracts. The
    facts are ``{first: a, second: b}`` (``"top"`` and ``"bottom"`` in the asked order).
    Example ``index`` of a split is a pure function of ``(seed, split, index)``.

    **Why by place, not by colour.** :class:`BarDifferenceTask` names its bars by colour;
    the tiny model built from a config never binds a colour to a height there, even after a
    6,000-step warm-up opened with the total (docs/evidence.md), while it does learn where
    squares are by halves (:class:`RegionCountTask`). Here a chart is read as people read
    one labelled by position: which bar is which is its place, what is asked is its length.
    A model that sees both lengths but not which bar is where is right at most half the
    time; one that knows only the total length less often (docs/evidence.md).

    **The opening**, as :class:`RegionCountTask`'s: with ``opening=N`` the first ``N``
    examples that :meth:`sample` returns ask "How long are the two bars together?" about
    the same picture (:meth:`opening_example`; the chain states both lengths, then adds):
    the picture's coloured area, the way into the image. The trainer sets ``N`` from
    ``data.opening_steps``. With the region task's recipe (400 opening steps, 6,000 in all)
    the tiny model reads both lengths on every seed and which bar is where on one seed of
    four (docs/evidence.md).

    Args:
      seed: base seed.
      max_length: longest possible bar in units, and the lattice's cells per side (even,
        4-8).
      warmup_noise: probability that a stated length in the reference is wrong.
      image_size: side of the square RGB image in pixels.
      split: ``"train"`` or ``"heldout"``.
      size: number of examples.
      opening: how many examples at the start of the sampled stream ask the total length
        (train split only).
    """

    task = "lengths"
    PLACES = ("top", "bottom")
    FRAME = RegionCountTask.FRAME

    def __init__(self, seed: int = 0, *, max_length: int = 4, warmup_noise: float = 0.3,
                 image_size: int = 112, split: str = "train", size: int = 100_000,
                 opening: int = 0):
        _check_int("max_length", max_length, 4, 8)
        if max_length % 2:
            raise ValueError(f"max_length: must be even (a top and a bottom half of the "
                             f"lattice's rows), got {max_length}")
        self._setup(seed, warmup_noise, image_size, split, size, max_length=max_length)
        self._setup_opening(opening, split)

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(d) for d in _signed_differences(self.max_length))

    def _example(self, index: int, *, opening: bool) -> Example:
        """The opening asks the total length of the two bars."""
        index = _index(index, self.size)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 23])
        m = self.max_length
        first, second = self.PLACES if rng.random() < 0.5 else self.PLACES[::-1]
        diff, first_length, second_length = _pair_with_difference(rng, m)
        facts = {first: first_length, second: second_length}
        image = self._draw_chart(rng, facts)
        if opening:
            question = self._OPENING_QUESTION
            reference = self._opening_reference(rng, facts, high=m)
            answer = sum(facts.values())
        else:
            question = (f"How much longer is the {first} bar than the {second} bar? Answer "
                        "with a number, negative if it is shorter.")
            reference = _subtraction_chain(
                rng, facts, first, second, high=m, noise=self.warmup_noise,
                openers=self._OPENERS, fact_phrases=self._FACT_PHRASES,
                last_phrases=self._LAST_PHRASES)
            answer = diff
        return self._build(index, opening=opening, image=image, question=question,
                           answer=answer, reference=reference, facts=facts)

    def _draw_chart(self, rng: np.random.Generator, lengths: dict[str, int]) -> Image.Image:
        """The chart of ``lengths`` (place -> length): each bar in a random row of its half,
        the two in random distinct colours (:meth:`_draw`)."""
        m = self.max_length
        rows = {"top": int(rng.integers(m // 2)), "bottom": m // 2 + int(rng.integers(m // 2))}
        names = list(COLORS)
        colours = dict(zip(self.PLACES, (names[i] for i in rng.permutation(len(names))[:2])))
        return self._draw({p: (rows[p], lengths[p], colours[p]) for p in self.PLACES})

    def _draw(self, bars: dict[str, tuple[int, int, str]]) -> Image.Image:
        """Each bar (place -> (lattice row, length, colour)) from the left edge ``length``
        cells to the right, 0.64 of a cell thick and centred in its row; the unit lines;
        the frame."""
        s, m = self.image_size, self.max_length
        cell = s / m
        image = Image.new("RGB", (s, s), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        for k in range(1, m):  # a faint line at every unit of length
            draw.line([(k * cell, 0), (k * cell, s - 1)], fill=_GRID_LINE)
        for row, length, colour in bars.values():
            cy, half = (row + 0.5) * cell, 0.32 * cell
            draw.rectangle([0, cy - half, length * cell - 1, cy + half], fill=COLORS[colour])
        draw.rectangle([0, 0, s - 1, s - 1], outline=(0, 0, 0), width=self.FRAME)
        return image

    _OPENING_QUESTION = "How long are the two bars together? Answer with a number."
    _OPENERS = ("", "Reading the bars. ", "I look at the chart. ", "Comparing lengths. ")
    _FACT_PHRASES = ("{c}: {n}.", "the {c} bar is {n}.", "{c} bar: {n}.")
    _LAST_PHRASES = ("So {a}-{b}={d}.", "{a}-{b}={d}.", "Difference {a}-{b}={d}.")
    _SUM_PHRASES = ("So {expr}={total}.", "{expr}={total}.", "Together {expr}={total}.")


class OneBarLengthTask(BarLengthTask):
    """How long is the top (bottom) bar? :class:`BarLengthTask`'s chart, one bar's length asked.

    The same picture (a top and a bottom bar from the left edge, framed, unit lines), but
    the two lengths are drawn independently and uniformly from ``1 .. max_length`` and the
    question asks one bar's length, the top or the bottom bar drawn at random: "How long is
    the top bar?" (answer uniform over ``1 .. max_length``, chance ``1 / max_length``). The
    reference chain states both lengths in random order (``bottom: 2. the top bar is 3.``,
    each wrong with probability ``warmup_noise``), then the asked one (``So the top one is
    3.``). The facts are ``{"top": a, "bottom": b}``. The opening is
    :class:`BarLengthTask`'s (the two bars' total length).

    **Why this question besides the difference.** With the difference asked, the lengths
    are drawn difference first, and a model that reads the two lengths without their places
    already states the second fact of a chain from the first and the total: place then
    decides only which of the two lengths comes first. The tiny model's warm-up there reads
    the lengths and not their places (the mirrored image changes nothing;
    docs/evidence.md). Here, as in :class:`RegionCountTask`, the lengths are independent, so
    the total leaves each length uncertain and only place settles it: knowing the total alone
    is right at most 7/16 of the time at ``max_length=4``, as for the region task (tested).
    With the region task's recipe the tiny model still reads place on one seed of four
    (docs/evidence.md): the independence alone does not make a chart as easy as the region
    task's squares.
    """

    task = "length"

    @property
    def answer_set(self) -> tuple[str, ...]:
        """Every possible answer, each equally likely."""
        return tuple(str(n) for n in range(1, self.max_length + 1))

    def _example(self, index: int, *, opening: bool) -> Example:
        """The opening asks the total length of the two bars."""
        index = _index(index, self.size)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 29])
        m = self.max_length
        facts = {p: int(rng.integers(1, m + 1)) for p in self.PLACES}
        asked = self.PLACES[int(rng.integers(2))]
        image = self._draw_chart(rng, facts)
        if opening:
            question = self._OPENING_QUESTION
            reference = self._opening_reference(rng, facts, high=m)
            answer = sum(facts.values())
        else:
            question = f"How long is the {asked} bar? Answer with a number."
            reference = _asked_chain(rng, facts, asked, high=m, noise=self.warmup_noise,
                                     openers=self._OPENERS, fact_phrases=self._FACT_PHRASES,
                                     last_phrases=self._ASKED_PHRASES)
            answer = facts[asked]
        return self._build(index, opening=opening, image=image, question=question,
                           answer=answer, reference=reference, facts=facts)

    _ASKED_PHRASES = ("So the {asked} one is {n}.", "The {asked} one: {n}.",
                      "So {n} for the {asked}.")
    """The last step names the asked bar without a fact phrase's words (``the top bar is``),
    so only the stated facts read as perception
    (:func:`~reference_impl.data.chains.chain_facts`)."""


TASKS: dict[str, type[_VisualTask]] = {
    cls.task: cls for cls in (GridPlaceTask, RowOrderTask, BarDifferenceTask, RegionCountTask,
                              BarLengthTask, OneBarLengthTask)}
"""``data.synthetic_task`` name -> task class, for the tasks of this module."""
