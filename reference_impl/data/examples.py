"""What the trainer learns from: :class:`Example` and the resumable :class:`ExampleSampler`.

Every data source (the synthetic tasks of :mod:`reference_impl.data.synthetic` and
:mod:`reference_impl.data.visual_tasks`, the file loader of :mod:`reference_impl.data.sources`)
yields :class:`Example` through :class:`ExampleSampler`'s deterministic ``sample(n)``
cursor. Prompts follow the paper's format (:func:`make_prompt`): the question, then an
instruction to reason inside ``<think>...</think>`` and put the final answer in ``\\boxed{}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

import numpy as np
from PIL import Image

__all__ = ["Example", "ExampleSampler", "INSTRUCTION", "make_prompt"]

INSTRUCTION = (
    "Think it through inside <think> </think> tags first, "
    "then give the final answer inside \\boxed{}."
)


def make_prompt(question: str) -> str:
    """The user turn in the paper's format: the question, then the think/boxed instruction."""
    if not isinstance(question, str):
        raise TypeError(f"question: expected str, got {type(question).__name__}")
    return f"{question.strip()} {INSTRUCTION}"


@dataclasses.dataclass(frozen=True)
class Example:
    """One visual question: an RGB image, the question text, its reference answer."""

    image: Image.Image
    question: str
    answer: str
    task: str
    id: str
    reference: str | None = None
    """A full reference response (``<think>...</think> \\boxed{...}``) for the supervised
    warm-up, where the source has one."""
    facts: dict[str, Any] | None = None
    """What the image shows, where the source knows it (the chain task's counts)."""

    @property
    def prompt(self) -> str:
        """The question followed by the paper's ``<think>``/``\\boxed{}`` instruction."""
        return make_prompt(self.question)


class ExampleSampler:
    """Deterministic, resumable batches over an indexable dataset of :class:`Example`.

    ``sample(n)`` returns the next ``n`` examples of an endless stream of epochs; with
    ``shuffle=True`` each epoch is a permutation drawn from ``(seed, epoch)``. The
    position is saved and restored with :meth:`state_dict` / :meth:`load_state_dict`.
    Subclasses define ``__len__``, ``__getitem__`` and set ``self._seed`` and
    ``self._shuffle`` (both keyword ``seed``/``shuffle`` of their constructor).
    """

    _seed: int
    _shuffle: bool
    _cursor: int = 0

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Example:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Example]:
        for i in range(len(self)):
            yield self[i]

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self)
        if not self._shuffle:
            return np.arange(n)
        return np.random.default_rng([self._seed, epoch]).permutation(n)

    def sample(self, n: int) -> list[Example]:
        """The next ``n`` examples (crossing epoch boundaries as needed)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n: expected a non-negative int, got {n!r}")
        size = len(self)
        if size == 0:
            raise ValueError("n: cannot sample from an empty dataset")
        out = []
        order, order_epoch = None, -1
        for position in range(self._cursor, self._cursor + n):
            epoch, k = divmod(position, size)
            if epoch != order_epoch:
                order, order_epoch = self._order(epoch), epoch
            out.append(self._example_at(position, int(order[k])))
        self._cursor += n
        return out

    def _example_at(self, position: int, index: int) -> Example:
        """The example that :meth:`sample` returns at stream ``position`` for dataset row
        ``index``: ``self[index]``; a task whose early stream differs (a warm-up
        curriculum, :class:`~reference_impl.data.visual_tasks.BarDifferenceTask`'s
        ``opening``) overrides it."""
        return self[index]

    @property
    def position(self) -> int:
        """How many examples :meth:`sample` has returned so far."""
        return self._cursor

    def state_dict(self) -> dict[str, int]:
        return {"cursor": self._cursor}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        cursor = state.get("cursor") if isinstance(state, Mapping) else None
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise ValueError(f"state: expected {{'cursor': int >= 0}}, got {state!r}")
        self._cursor = cursor
