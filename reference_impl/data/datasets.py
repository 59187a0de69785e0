"""The run's datasets from its config: the synthetic tasks, or local files with a
held-out split (:func:`build_datasets`)."""

from __future__ import annotations

from reference_impl.config import Config
from reference_impl.data import sources as data_mod
from reference_impl.data import visual_tasks
from reference_impl.data.examples import Example, ExampleSampler
from reference_impl.data.synthetic import SyntheticVisualTask


def build_datasets(cfg: Config, *, world_size: int = 1):
    """``(train, heldout)`` samplers of :class:`reference_impl.data.examples.Example`.

    ``world_size`` (the processes sharing one data stream, each drawing its slice) turns
    ``data.opening_steps`` warm-up steps into the stream's first examples: a step draws
    ``rollout.prompts_per_step * rollout.samples_per_prompt`` per process."""
    d = cfg.data
    if d.source == "synthetic" and d.synthetic_task == "chain":
        from reference_impl.data.chains import ChainCountTask

        train = ChainCountTask(cfg.train.seed, facts=d.chain_facts, max_count=d.chain_max_count,
                               distractors=d.chain_distractors,
                               warmup_noise=d.chain_warmup_noise, filler=d.chain_filler,
                               image_size=d.image_size)
        return train, train.heldout(d.eval_size)
    if d.source == "synthetic" and d.synthetic_task in visual_tasks.TASKS:
        cls = visual_tasks.TASKS[d.synthetic_task]
        opening = {}
        if d.opening_steps:  # Config allows it for the tasks with an opening only
            r = cfg.rollout
            opening["opening"] = d.opening_steps * r.prompts_per_step * r.samples_per_prompt \
                * world_size
        train = cls(cfg.train.seed, warmup_noise=d.chain_warmup_noise, image_size=d.image_size,
                    **opening)
        return train, train.heldout(d.eval_size)
    if d.source == "synthetic":
        train = SyntheticVisualTask(cfg.train.seed, image_size=d.image_size)
        return train, train.heldout(d.eval_size)
    common = dict(question_keys=(cfg.data.prompt_column,) + data_mod.QUESTION_KEYS,
                  answer_keys=(cfg.data.answer_column,) + data_mod.ANSWER_KEYS,
                  image_keys=(cfg.data.image_column,) + data_mod.IMAGE_KEYS,
                  reference_keys=(() if d.reference_column is None else (d.reference_column,))
                  + data_mod.REFERENCE_KEYS)
    train = data_mod.LocalFileDataset(cfg.data.source, seed=cfg.train.seed,
                                      shuffle=cfg.data.shuffle, **common)
    if cfg.data.eval_source is not None:
        heldout = data_mod.LocalFileDataset(cfg.data.eval_source, seed=cfg.train.seed,
                                            shuffle=False, limit=cfg.data.eval_size, **common)
    else:  # hold out the last eval_size rows; train on the rest
        heldout = Subset(train, range(max(len(train) - cfg.data.eval_size, 0), len(train)))
        train = Subset(train, range(0, max(len(train) - cfg.data.eval_size, 0)),
                        seed=cfg.train.seed, shuffle=cfg.data.shuffle)
    return train, heldout


class Subset(ExampleSampler):
    """Rows ``indices`` of ``base`` as a resumable sampler of their own (its skipped rows
    are ``base``'s: they were counted when ``base`` was read)."""

    def __init__(self, base: ExampleSampler, indices, *, seed: int = 0,
                 shuffle: bool = False) -> None:
        self._base, self._indices = base, list(indices)
        self._seed, self._shuffle = seed, shuffle
        self.skipped = getattr(base, "skipped", {})

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> Example:
        return self._base[self._indices[int(i)]]


__all__ = ["Subset", "build_datasets"]
