"""The ```python blocks of README.md and docs/*.md run as written.

Every block runs, in a fresh namespace, unless the line right before its fence (blank lines
allowed between) is a skip marker that gives a reason::

    <!-- snippet: skip (needs a GPU) -->
    ```python
    ...
    ```

A marker without a reason, or one that is not followed by a python block, is an error, so
a block cannot drop out of the check silently. Blocks in other languages (bash, text) are
not run.

All blocks run in ONE child process (the imports of torch, transformers and TRL are paid
once; the test session's own state, global RNGs included, is not touched), each with a new
globals dict and its own empty working directory, with the repository root and
``adapters/`` on ``sys.path`` (so ``from examples.trl_pgpo import ...`` works, as it does
from the repository's root). A failure reports the file, the block's first line number and
the traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!--\s*snippet:\s*skip\s*(?:\((?P<reason>[^)]*)\))?\s*-->\s*$")
MARKER = re.compile(r"<!--\s*snippet:")


def doc_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def extract(path: Path) -> tuple[list[dict], list[str]]:
    """``(blocks, errors)``: every fenced python block of ``path`` with its start line and
    skip reason (None: it runs), and the misuse of skip markers found on the way."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, errors = [], []
    pending: tuple[int, str | None] | None = None   # (line, reason) of a marker awaiting a fence
    i = 0
    rel = path.relative_to(ROOT).as_posix()
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if MARKER.search(line):
            m = SKIP.match(line.strip())
            if not m:
                errors.append(f"{rel}:{i + 1}: unreadable snippet marker {line.strip()!r}; "
                              "write <!-- snippet: skip (reason) -->")
            elif not (m.group("reason") or "").strip():
                errors.append(f"{rel}:{i + 1}: a skip marker needs a reason: "
                              "<!-- snippet: skip (reason) -->")
            else:
                pending = (i + 1, m.group("reason").strip())
        elif fence:
            lang = fence.group(1)
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if lang == "python":
                blocks.append({"file": rel, "line": i + 1, "code": "\n".join(lines[i + 1:end]),
                               "skip": pending[1] if pending else None})
            elif pending:
                errors.append(f"{rel}:{pending[0]}: the skip marker is followed by a "
                              f"```{lang} block, not a python one")
            pending = None
            i = end
        elif line.strip() and pending:
            errors.append(f"{rel}:{pending[0]}: the skip marker is not followed by a code block")
            pending = None
        i += 1
    if pending:
        errors.append(f"{rel}:{pending[0]}: the skip marker is not followed by a code block")
    return blocks, errors


def all_blocks() -> tuple[list[dict], list[str]]:
    blocks, errors = [], []
    for path in doc_files():
        b, e = extract(path)
        blocks += b
        errors += e
    return blocks, errors


_RUNNER = r"""
import json, os, sys, tempfile, traceback
blocks = json.load(open(sys.argv[1]))
results = []
for block in blocks:
    work = tempfile.mkdtemp(prefix="pgpo-snippet-")
    os.chdir(work)
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(block["code"], f"{block['file']}:{block['line']}", "exec"), namespace)
        results.append(None)
    except BaseException:
        results.append(traceback.format_exc())
json.dump(results, open(sys.argv[2], "w"))
"""

BLOCKS, MARKER_ERRORS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b["skip"] is None]


def test_skip_markers_are_well_formed():
    assert not MARKER_ERRORS, "\n".join(MARKER_ERRORS)


def test_some_snippets_run():
    # The README's core and TRL examples at least: a broken extraction must not pass as "0 of 0".
    assert sum(b["file"] == "README.md" for b in RUNNABLE) >= 2, RUNNABLE


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snippets")
    (tmp / "blocks.json").write_text(json.dumps(RUNNABLE))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "adapters")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", "2")
    env["TOKENIZERS_PARALLELISM"] = "false"
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(tmp / "blocks.json"),
                           str(tmp / "results.json")], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp / "results.json").read_text())


@pytest.mark.parametrize("index", range(len(RUNNABLE)),
                         ids=[f"{b['file']}:{b['line']}" for b in RUNNABLE])
def test_snippet_runs(results, index):
    block = RUNNABLE[index]
    assert results[index] is None, (
        f"the ```python block at {block['file']}:{block['line']} failed:\n{results[index]}")
