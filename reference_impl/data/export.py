"""Export a synthetic task as a JSONL file with PNG images, for the file loader.

:func:`export_jsonl` writes any synthetic sampler (the simple task, the chain task, the
spatial, rows, bars, region and lengths tasks) as a JSONL file with PNG images beside it,
in the Hugging Face layout that :class:`reference_impl.data.sources.LocalFileDataset`
reads back as the same examples (``data.source=<file>.jsonl``). From the command line::

    python -m reference_impl.data.export OUT.jsonl --size 2000 [--heldout] \\
        [data.synthetic_task=spatial train.seed=0 ...]
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

from reference_impl.data.examples import Example

__all__ = ["export_jsonl", "main"]


def export_jsonl(examples: Iterable[Example], path: str | os.PathLike, *,
                 image_dir: str | None = None) -> int:
    """Write ``examples`` to the JSONL file ``path`` and their images as PNG files; returns
    how many rows were written.

    One row per example, in the Hugging Face layout :class:`reference_impl.data.sources.
    LocalFileDataset` reads: ``problem`` (the question, without the think/boxed
    instruction, which the loader adds again), ``answer``, ``images`` (a one-element list
    with the PNG's path relative to the JSONL file's folder), ``reference`` (the warm-up
    chain, or null), ``task`` and ``facts`` (what the image shows, or null). The images go
    to ``image_dir`` (a folder name relative to that folder; default ``<stem>_images``),
    named by row number. PNG is lossless, so loading the file gives the same pixels."""
    path = os.fspath(path)
    if not path.endswith(".jsonl"):
        raise ValueError(f"path: expected a .jsonl file name, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    image_dir = image_dir or os.path.splitext(os.path.basename(path))[0] + "_images"
    if os.path.isabs(image_dir) or ".." in image_dir.split(os.sep):
        raise ValueError(f"image_dir: expected a folder name inside {folder!r}, "
                         f"got {image_dir!r}")
    os.makedirs(os.path.join(folder, image_dir), exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for n, e in enumerate(examples, start=1):
            rel = f"{image_dir}/{n - 1:06d}.png"
            e.image.save(os.path.join(folder, rel), format="PNG")
            f.write(json.dumps({"problem": e.question, "answer": e.answer, "images": [rel],
                                "reference": e.reference, "task": e.task,
                                "facts": e.facts}) + "\n")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reference_impl.data.export OUT.jsonl --size N [--heldout] [overrides]``:
    export the synthetic task that the trainer configuration (``data.synthetic_task``,
    ``train.seed``, ``data.*``) builds, in the order its sampler draws them (with
    ``data.opening_steps`` the opening questions of the bars, region or lengths task come
    first)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m reference_impl.data.export",
        description="Export a synthetic task as JSONL + PNG images (data.source=OUT.jsonl).")
    parser.add_argument("out", help="the .jsonl file to write (images go beside it)")
    parser.add_argument("--size", type=int, required=True, help="number of examples")
    parser.add_argument("--heldout", action="store_true",
                        help="export the held-out split (as the trainer draws it)")
    parser.add_argument("overrides", nargs="*", help="trainer config overrides, SECTION.FIELD=VALUE")
    args = parser.parse_intermixed_args(argv)
    if args.size < 1:
        parser.error(f"--size: expected a positive int, got {args.size}")
    from reference_impl.config import load_config
    from reference_impl.data.datasets import build_datasets

    cfg = load_config([*args.overrides, "train.output_dir=unused", "data.source=synthetic",
                       f"data.eval_size={args.size}"], check_environment=False)
    train, heldout = build_datasets(cfg)
    source = heldout if args.heldout else train
    # In the order the trainer draws them (a curriculum's opening first: with
    # data.shuffle=false the file loader then gives the warm-up the same stream).
    n = export_jsonl((source.sample(1)[0] for _ in range(args.size)), args.out)
    print(f"wrote {n} {cfg.data.synthetic_task} examples to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
