"""The default synthetic visual task: small Pillow images whose answer is in the pixels.

:class:`SyntheticVisualTask` draws counting, colour, relative-position and tallest-bar
questions. Every example is a pure function of ``(seed, split, index)``; answers are drawn
uniformly from each task's answer set, and every question string is shared by all answers
of its task, so a model that ignores the image cannot beat chance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from reference_impl.data.examples import Example, ExampleSampler

__all__ = ["ANSWER_SETS", "COLORS", "SyntheticVisualTask", "TASKS"]

TASKS = ("count", "color", "position", "chart")

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}

ANSWER_SETS = {
    "count": ("1", "2", "3", "4"),
    "color": tuple(COLORS),
    "position": ("left", "right", "above", "below"),
    "chart": ("1", "2", "3", "4"),
}

_SHAPES = ("circle", "square", "triangle")
_SPLITS = {"train": 0, "heldout": 1}
_BACKGROUND = (255, 255, 255)
_MARKER = (0, 0, 0)


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
                fill: tuple[int, int, int]) -> None:
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:  # triangle
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


class SyntheticVisualTask(ExampleSampler):
    """Visual questions answerable only from the image, generated on the fly.

    Task types (answers drawn uniformly from :data:`ANSWER_SETS`):

    * ``count``: 1-4 shapes of one kind in distinct cells of a 3x3 grid; "How many
      circles are in the image?".
    * ``color``: one shape in one of four colours; "What color is the square?".
    * ``position``: a coloured circle left of, right of, above or below a black square.
    * ``chart``: four bars, one clearly the tallest; "Which bar is the tallest?" (1-4).

    Example ``index`` has task ``tasks[index % len(tasks)]`` and is drawn from a random
    generator seeded with ``(seed, split, index)``: the same arguments always give the
    same pixels, and the ``"train"`` and ``"heldout"`` splits use disjoint streams.

    Args:
      seed: base seed.
      tasks: which task types to mix (a non-empty subset of :data:`TASKS`).
      image_size: side of the square RGB image in pixels (>= 28).
      split: ``"train"`` or ``"heldout"``.
      size: number of examples (indices ``0 .. size-1``).
    """

    def __init__(self, seed: int = 0, tasks: Sequence[str] = TASKS, *, image_size: int = 56,
                 split: str = "train", size: int = 100_000):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        if isinstance(tasks, str):
            raise TypeError("tasks: expected a sequence of task names, got a single str")
        tasks = tuple(tasks)
        if not tasks or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks: expected distinct names from {TASKS}, got {tasks!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 28:
            raise ValueError(f"image_size: expected an int >= 28, got {image_size!r}")
        if split not in _SPLITS:
            raise ValueError(f"split: expected one of {tuple(_SPLITS)}, got {split!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected a positive int, got {size!r}")
        self.seed, self.tasks, self.image_size = seed, tasks, image_size
        self.split, self.size = split, size
        self._seed, self._shuffle = seed, False  # examples are already i.i.d.

    def heldout(self, size: int = 256) -> "SyntheticVisualTask":
        """The held-out split with the same seed, tasks and image size."""
        return SyntheticVisualTask(self.seed, self.tasks, image_size=self.image_size,
                                   split="heldout", size=size)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"SyntheticVisualTask(seed={self.seed}, tasks={self.tasks}, "
                f"image_size={self.image_size}, split={self.split!r}, size={self.size})")

    def __getitem__(self, index: int) -> Example:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected int, got {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index: {index} out of range for size {self.size}")
        task = self.tasks[index % len(self.tasks)]
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        answer = ANSWER_SETS[task][int(rng.integers(len(ANSWER_SETS[task])))]
        image = Image.new("RGB", (self.image_size, self.image_size), _BACKGROUND)
        question = getattr(self, f"_draw_{task}")(ImageDraw.Draw(image), rng, answer)
        return Example(image=image, question=question, answer=answer, task=task,
                       id=f"synthetic-{self.split}-{self.seed}-{index}")

    # Each _draw_<task> draws the picture for `answer` and returns the question text,
    # which depends only on variables drawn independently of the answer.

    def _draw_count(self, draw, rng, answer: str) -> str:
        s = self.image_size
        cell = s / 3
        kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
        cells = rng.choice(9, size=int(answer), replace=False)
        names = list(COLORS)
        for c in cells:
            row, col = divmod(int(c), 3)
            r = cell * rng.uniform(0.25, 0.33)
            jitter = cell / 2 - r - 1
            cx = (col + 0.5) * cell + rng.uniform(-jitter, jitter)
            cy = (row + 0.5) * cell + rng.uniform(-jitter, jitter)
            _draw_shape(draw, kind, cx, cy, r, COLORS[names[int(rng.integers(len(names)))]])
        return f"How many {kind}s are in the image? Answer with a number from 1 to 4."

    def _draw_color(self, draw, rng, answer: str) -> str:
        s = self.image_size
        kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
        r = s * rng.uniform(0.18, 0.28)
        cx, cy = rng.uniform(r + 1, s - r - 1, size=2)
        _draw_shape(draw, kind, cx, cy, r, COLORS[answer])
        return f"What color is the {kind}? Answer with red, green, blue or yellow."

    def _draw_position(self, draw, rng, answer: str) -> str:
        s = self.image_size
        names = list(COLORS)
        colour = names[int(rng.integers(len(names)))]
        r = s * 0.09
        # Marker near the centre; target at least 2.5 radii away along the answer's axis
        # and at most 0.8 radii off that axis, so the relation is unambiguous.
        mx, my = s / 2 + rng.uniform(-0.06 * s, 0.06 * s, size=2)
        along = rng.uniform(2.5 * r, s / 2 - 0.06 * s - r - 1)
        across = rng.uniform(-0.8 * r, 0.8 * r)
        dx, dy = {"left": (-along, across), "right": (along, across),
                  "above": (across, -along), "below": (across, along)}[answer]
        _draw_shape(draw, "square", mx, my, r, _MARKER)
        _draw_shape(draw, "circle", mx + dx, my + dy, r, COLORS[colour])
        return (f"Where is the {colour} circle relative to the black square? "
                "Answer with left, right, above or below.")

    def _draw_chart(self, draw, rng, answer: str) -> str:
        s = self.image_size
        n = 4
        base, top = s - 3, 3
        span = base - top
        tallest = int(answer) - 1
        heights = rng.uniform(0.15, 0.65, size=n) * span
        heights[tallest] = rng.uniform(max(np.delete(heights, tallest)) + 0.15 * span,
                                       0.95 * span)
        width = s / (2 * n + 1)
        names = list(COLORS)
        colour = COLORS[names[int(rng.integers(len(names)))]]
        draw.line([(1, base), (s - 2, base)], fill=_MARKER)
        for i, h in enumerate(heights):
            x0 = (2 * i + 1) * width
            draw.rectangle([x0, base - h, x0 + width - 1, base - 1], fill=colour)
        return "Which bar is the tallest? The bars are numbered 1 to 4 from left to right."
