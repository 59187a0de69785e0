"""The local-file loader: JSONL or Parquet rows as :class:`~reference_impl.data.examples.Example`.

:class:`LocalFileDataset` reads JSONL or Parquet files (a file, a directory of shards or
a glob), e.g. a local copy of ViRL39K (``problem``, ``answer``, ``images``) or
Geometry3K (``problem``, ``answer``, ``images``) in the Hugging Face datasets layout.
Rows with a missing or corrupt image, a missing question or an empty answer are
skipped and counted by reason in :attr:`LocalFileDataset.skipped`, with their line.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import dataclasses
import glob as globlib
import io
import json
import logging
import math
import os
import re
from collections import Counter
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from reference_impl.data.examples import Example, ExampleSampler

__all__ = ["ImageLimits", "LocalFileDataset", "SKIP_REASONS", "strip_image_placeholders"]

logger = logging.getLogger(__name__)

QUESTION_KEYS = ("problem", "question", "prompt", "query")
ANSWER_KEYS = ("answer", "solution", "ground_truth", "reward_model.ground_truth")
IMAGE_KEYS = ("images", "image", "image_path", "image_bytes")
TASK_KEYS = ("category", "data_source", "task")
REFERENCE_KEYS = ("reference", "rationale", "reasoning", "chain_of_thought")
FACTS_KEY = "facts"
"""Optional column: what the image shows, an object of names to ints (``{"red": 3}``), as
:func:`reference_impl.data.export.export_jsonl` writes it; it becomes
:attr:`Example.facts`, from which the trainer measures perception accuracy."""

SKIP_REASONS = ("invalid_utf8", "invalid_json", "missing_question", "empty_answer",
                "missing_image", "corrupt_image", "image_too_small", "image_too_large",
                "extreme_aspect_ratio", "unreadable_row")
# How many skipped rows' places (file:line) the load log names per reason.
SHOWN_SKIPPED_ROWS = 5


class _SkipRow(Exception):
    """A row that cannot be used, with the reason it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """The images a row may carry, decided once when the data is loaded.

    The defaults are the limits of the Qwen2.5-VL image processor the trainer uses
    (patch 14, ``smart_resize``): ``max_aspect_ratio=200`` is the ratio above which
    ``smart_resize`` raises ("absolute aspect ratio must be smaller than 200");
    ``min_side=14`` (one patch) rejects slivers that the processor would blow up from
    less than a patch of pixels; ``max_pixels`` is Pillow's decompression-bomb
    threshold (``PIL.Image.MAX_IMAGE_PIXELS``), above which decoding the image for
    every rollout costs more memory than the resized result is worth. Rows outside
    the limits are skipped and counted as ``image_too_small``, ``image_too_large`` or
    ``extreme_aspect_ratio``.
    """

    min_side: int = 14
    max_pixels: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
    max_aspect_ratio: float = 200.0

    def __post_init__(self) -> None:
        if isinstance(self.min_side, bool) or not isinstance(self.min_side, int) \
                or self.min_side < 1:
            raise ValueError(f"min_side: expected an int >= 1, got {self.min_side!r}")
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) \
                or self.max_pixels < self.min_side ** 2:
            raise ValueError(f"max_pixels: expected an int >= min_side ** 2, "
                             f"got {self.max_pixels!r}")
        if not self.max_aspect_ratio >= 1:
            raise ValueError(f"max_aspect_ratio: expected a number >= 1, "
                             f"got {self.max_aspect_ratio!r}")

    def reason(self, width: int, height: int) -> str | None:
        """The skip reason for an image of this size, or None when it is accepted."""
        if max(width, height) > self.max_aspect_ratio * min(width, height):
            return "extreme_aspect_ratio"
        if min(width, height) < self.min_side:
            return "image_too_small"
        if width * height > self.max_pixels:
            return "image_too_large"
        return None

_PLACEHOLDER = re.compile(r"\s*<image>\s*")


def strip_image_placeholders(question: str) -> str:
    """Remove ``<image>`` placeholders (the processor inserts its own image tokens)."""
    return _PLACEHOLDER.sub(" ", question).strip()


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, following dots into nested dicts (``"reward_model.ground_truth"``)."""
    if key in row:
        return row[key]
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _first_present(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = _lookup(row, key)
        if value is not None:
            return value
    return None


def _question_text(value: Any) -> str | None:
    """Question text from a string or a chat list ``[{"role", "content"}, ...]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        users = [m for m in value if m.get("role", "user") == "user"]
        if not users:
            return None
        content = users[-1].get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image"}]
            content = " ".join(p.get("text", "") for p in content
                               if isinstance(p, Mapping) and p.get("type") == "text")
        return content if isinstance(content, str) else None
    return None


def _answer_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return repr(value)
    return value if isinstance(value, str) else None


class LocalFileDataset(ExampleSampler):
    """Visual questions from local JSONL or Parquet files; bad rows are skipped and counted.

    ``source`` is a ``.jsonl``/``.json`` (one object per line) or ``.parquet`` file, a
    directory (every such file under it, recursively; with ``split`` given only files
    whose name starts with it, e.g. ``train-00000-of-00002.parquet``), or a glob pattern.

    Each row needs a question (first of ``question_keys`` present; a plain string or a
    chat list of ``{"role", "content"}`` messages), an answer (first of ``answer_keys``;
    dotted keys reach into nested dicts) and an image (first of ``image_keys``) given as
    a path (absolute, or relative to ``image_root`` or else to the data file's folder),
    raw bytes, a Hugging Face datasets image dict ``{"bytes": ..., "path": ...}`` (its
    bytes as raw bytes, base64 text, as many JSONL exports store them, or a list of
    ints), a ``data:image/...;base64,`` URI, or a list of those (the first is used). A
    UTF-8 byte-order mark at the start of a JSONL file is ignored. ``<image>`` placeholders are removed from the
    question. Every image is decoded once at load time, so an image that fails to decode
    is caught here, never mid-run; decoded images are not kept (``__getitem__`` decodes
    again from the stored bytes or path).

    Whatever is wrong with a row, it is skipped and counted by reason
    (:data:`SKIP_REASONS`) in :attr:`skipped`, e.g. ``{"missing_image": 2,
    "corrupt_image": 1, "invalid_utf8": 1, "extreme_aspect_ratio": 1}``, and logged once:
    a JSONL line that is not UTF-8 or not a JSON object, a missing question or answer, a
    missing or undecodable image, or an image outside ``image_limits``
    (:class:`ImageLimits`, by default the limits of the Qwen2.5-VL processor), or
    anything else that fails while reading the row (``unreadable_row``; also a
    :data:`FACTS_KEY` column that is neither null nor an object of names to ints). Everything read
    from a row is decoded inside this per-row handling, so one bad row never makes the
    file unreadable. :attr:`skipped_rows` names where the skipped rows are (``file:line``
    for JSONL, 1-based; ``file:row N`` for Parquet, 0-based), the first
    :data:`SHOWN_SKIPPED_ROWS` of each reason, also in the log line.
    :attr:`multi_image_rows` counts rows whose extra images were dropped.
    """

    def __init__(self, source: str | os.PathLike, *, split: str | None = None,
                 question_keys: Sequence[str] = QUESTION_KEYS,
                 answer_keys: Sequence[str] = ANSWER_KEYS,
                 image_keys: Sequence[str] = IMAGE_KEYS,
                 task_keys: Sequence[str] = TASK_KEYS,
                 reference_keys: Sequence[str] = REFERENCE_KEYS,
                 image_root: str | os.PathLike | None = None,
                 limit: int | None = None, seed: int = 0, shuffle: bool = True,
                 image_limits: ImageLimits | None = None):
        for name, keys in (("question_keys", question_keys), ("answer_keys", answer_keys),
                           ("image_keys", image_keys), ("task_keys", task_keys),
                           ("reference_keys", reference_keys)):
            if isinstance(keys, str):
                raise TypeError(f"{name}: expected a sequence of column names, got a str")
            if name in ("question_keys", "answer_keys", "image_keys") and not keys:
                raise ValueError(f"{name}: expected at least one column name")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ValueError(f"limit: expected a positive int or None, got {limit!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        self.question_keys, self.answer_keys = tuple(question_keys), tuple(answer_keys)
        self.image_keys, self.task_keys = tuple(image_keys), tuple(task_keys)
        self.reference_keys = tuple(reference_keys)
        self.image_root = None if image_root is None else os.fspath(image_root)
        if image_limits is not None and not isinstance(image_limits, ImageLimits):
            raise TypeError(f"image_limits: expected an ImageLimits, "
                            f"got {type(image_limits).__name__}")
        self.image_limits = image_limits or ImageLimits()
        self.files = self._resolve(os.fspath(source), split)
        self._seed, self._shuffle = seed, shuffle
        self._records: list[tuple[str | bytes, str, str, str, str, str | None,
                                  dict[str, int] | None]] = []
        self.skipped: dict[str, int] = {}
        self.skipped_rows: dict[str, list[str]] = {}
        self.multi_image_rows = 0
        self.rows_read = 0
        skipped: Counter[str] = Counter()
        places: dict[str, list[str]] = {}

        def skip(reason: str, path: str, line_no: int) -> None:
            skipped[reason] += 1
            shown = places.setdefault(reason, [])
            if len(shown) < SHOWN_SKIPPED_ROWS:
                where = (f"row {line_no}" if path.endswith(".parquet")
                         else f"line {line_no + 1}")
                shown.append(f"{os.path.basename(path)}:{where}")

        for path in self.files:
            for line_no, row in self._rows(path, skip):
                if limit is not None and len(self._records) >= limit:
                    break
                self.rows_read += 1
                try:
                    reason = self._add(row, path, line_no)
                except _SkipRow as err:
                    reason = err.reason
                except Exception:  # whatever else one row holds: that row only
                    reason = "unreadable_row"
                if reason is not None:
                    skip(reason, path, line_no)
        self.skipped = {r: skipped[r] for r in SKIP_REASONS if skipped[r]}
        self.skipped_rows = {r: places[r] for r in SKIP_REASONS if r in places}
        if self.skipped:
            logger.warning("%s: skipped %d of %d rows %s (at %s)", source,
                           sum(self.skipped.values()),
                           self.rows_read + skipped["invalid_json"] + skipped["invalid_utf8"],
                           self.skipped, "; ".join(f"{r}: {', '.join(p)}"
                                                   for r, p in self.skipped_rows.items()))

    @staticmethod
    def _resolve(source: str, split: str | None) -> list[str]:
        exts = (".jsonl", ".json", ".parquet")
        if os.path.isdir(source):
            files = [os.path.join(d, f) for d, _, names in os.walk(source) for f in names
                     if f.endswith(exts)]
            if split is not None:
                files = [f for f in files if os.path.basename(f).startswith(split)]
        elif os.path.isfile(source):
            files = [source]
        else:
            files = [f for f in globlib.glob(source, recursive=True) if os.path.isfile(f)]
        files = sorted(f for f in files if f.endswith(exts))
        if not files:
            raise FileNotFoundError(
                f"source: no .jsonl/.json/.parquet files found at {source!r}"
                + (f" for split {split!r}" if split is not None else ""))
        return files

    @staticmethod
    def _rows(path: str, skip: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            index = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
                for row in batch.to_pylist():
                    yield index, row
                    index += 1
            return
        with open(path, "rb") as f:  # decoded line by line: one bad byte costs one row
            for line_no, raw in enumerate(f):
                if line_no == 0 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]  # saved "UTF-8 with BOM"
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    skip("invalid_utf8", path, line_no)
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):
                    skip("invalid_json", path, line_no)
                    continue
                if not isinstance(row, dict):
                    skip("invalid_json", path, line_no)
                    continue
                yield line_no, row

    def _image_source(self, value: Any, data_file: str) -> str | bytes | None:
        if isinstance(value, (list, tuple)):
            if not value:
                return None
            value = value[0]
        if isinstance(value, Mapping):
            raw = value.get("bytes")
            if raw is not None and (not hasattr(raw, "__len__") or len(raw)):
                return _image_bytes(raw)
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value) if value else None
        if isinstance(value, str) and value.startswith("data:"):
            return _image_bytes(value)
        if isinstance(value, str) and value:
            if "\0" in value:
                raise _SkipRow("missing_image")
            if os.path.isabs(value):
                return value
            root = self.image_root or os.path.dirname(os.path.abspath(data_file))
            return os.path.join(root, value)
        return None

    def _add(self, row: Mapping[str, Any], data_file: str, row_index: int) -> str | None:
        """Validate one row; store it and return ``None``, or return the skip reason."""
        question = _question_text(_first_present(row, self.question_keys))
        if question is None or not strip_image_placeholders(question):
            return "missing_question"
        answer = _answer_text(_first_present(row, self.answer_keys))
        if answer is None or not answer.strip():
            return "empty_answer"
        raw_image = _first_present(row, self.image_keys)
        image = self._image_source(raw_image, data_file)
        if image is None or (isinstance(image, str) and not os.path.isfile(image)):
            return "missing_image"
        try:
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as img:
                size_reason = self.image_limits.reason(*img.size)  # header only
                if size_reason is not None:
                    return size_reason
                img.load()
                img.convert("RGB")
        except Image.DecompressionBombError:
            return "image_too_large"
        except Exception:  # any decoder failure: truncated, unknown format, bad header
            return "corrupt_image"
        if isinstance(raw_image, (list, tuple)) and len(raw_image) > 1:
            self.multi_image_rows += 1
        task = _first_present(row, self.task_keys) if self.task_keys else None
        task = task if isinstance(task, str) and task else "local"
        row_id = f"{os.path.basename(data_file)}:{row_index}"
        reference = _first_present(row, self.reference_keys) if self.reference_keys else None
        reference = reference.strip() if isinstance(reference, str) and reference.strip() else None
        facts = row.get(FACTS_KEY)
        if facts is not None:
            if not (isinstance(facts, Mapping) and facts and all(
                    isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                    for k, v in facts.items())):
                return "unreadable_row"
            facts = dict(facts)
        self._records.append((image, strip_image_placeholders(question), answer.strip(),
                              task, row_id, reference, facts))
        return None

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> Example:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected int, got {type(index).__name__}")
        image, question, answer, task, row_id, reference, facts = self._records[int(index)]
        return Example(image=_open_rgb(image), question=question, answer=answer, task=task,
                       id=row_id, reference=reference, facts=facts)

    def __repr__(self) -> str:
        return (f"LocalFileDataset({len(self.files)} file(s), {len(self)} examples, "
                f"skipped={self.skipped})")


def _image_bytes(value: Any) -> bytes:
    """An image's encoded bytes as a row stores them: raw bytes, base64 text (a
    ``data:image/...;base64,`` URI too) or a list of ints 0-255; anything else is a
    ``corrupt_image`` row."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _SkipRow("corrupt_image") from None
    if isinstance(value, (list, tuple)) and all(
            isinstance(b, int) and not isinstance(b, bool) for b in value):
        try:
            return bytes(value)
        except ValueError:  # an int outside 0-255
            raise _SkipRow("corrupt_image") from None
    raise _SkipRow("corrupt_image")


def _open_rgb(source: str | bytes) -> Image.Image:
    """Decode an image fully (raising on corrupt data) and convert it to RGB."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        img.load()
        return img.convert("RGB")
