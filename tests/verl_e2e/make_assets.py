"""The end-to-end run's model and data, made here (nothing is downloaded).

- The tiny Qwen2.5-VL at vLLM's size (``pgpo_torch.tiny``: 2 heads of 32, since vLLM's CPU
  attention needs a head size of at least 32), saved with its processor.
- A verl multimodal parquet (the layout of verl's geo3k example: ``prompt`` messages with an
  ``<image>`` tag, ``images`` as PNG bytes, ``reward_model.ground_truth``): coloured 56x56
  squares, "Which colour is the square?".
- The reward (:func:`compute_score`, verl's ``custom_reward_function``): the share of the
  response's characters that are letters of the right colour's name. The untrained model
  gets small, varying, non-zero rewards, so GRPO's groups carry signal from step 1.

``python make_assets.py OUT`` writes ``OUT/model``, ``OUT/train.parquet``, ``OUT/val.parquet``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
           "yellow": (230, 220, 20)}
#: The vLLM-sized tiny Qwen2.5-VL (as tests/vllm_rollouts/_vllm_tiny.py).
MODEL = dict(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=2,
             intermediate_size=128, vision_hidden_size=64, vision_depth=2)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_):
    """Share of the response's characters that occur in the answer's name (0 for empty)."""
    text = solution_str.lower()
    if not text:
        return 0.0
    return sum(ch in ground_truth for ch in text) / len(text)


def _png(rgb) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (56, 56), rgb).save(buf, format="PNG")
    return buf.getvalue()


def write_data(path: Path, n: int, *, seed: int) -> None:
    import random

    import pandas as pd

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = rng.choice(sorted(COLOURS))
        rows.append(dict(
            data_source="pgpo_colours",
            prompt=[{"role": "user", "content": "<image>Which colour is the square?"}],
            images=[{"bytes": _png(COLOURS[name])}],
            ability="perception",
            reward_model={"style": "rule", "ground_truth": name},
            extra_info={"index": i, "split": path.stem}))
    pd.DataFrame(rows).to_parquet(path)


def write_model(path: Path) -> None:
    from pgpo_torch.tiny import build_tiny_processor, build_tiny_model

    processor = build_tiny_processor()
    model = build_tiny_model(processor, seed=0, attn_implementation="sdpa", **MODEL)
    model.save_pretrained(path, safe_serialization=True)
    processor.tokenizer.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    if getattr(processor, "chat_template", None):
        (path / "chat_template.jinja").write_text(processor.chat_template)


def main(out: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_model(out / "model")
    write_data(out / "train.parquet", 64, seed=0)
    write_data(out / "val.parquet", 8, seed=1)


if __name__ == "__main__":
    main(sys.argv[1])
