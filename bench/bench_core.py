"""Benchmark of pgpo_core's two hot paths, as ratios measured side by side in one run.

Not a test: it prints a markdown table and asserts nothing about speed.

1. Exact token visual dependency (Eq. 1) at Qwen2.5-VL's vocabulary, V = 152,064,
   T = 2,048 tokens (B = 1), float32 logits: ``token_visual_dependency`` with
   ``chunk_size`` (bounded working memory) versus ``chunk_size=None`` (the naive
   version: two full (T, V) log-softmaxes), on numpy and on torch (CPU).
   - time: best of ``--repeats`` calls, all in this process on the same inputs, the
     variants interleaved in each round; torch is timed with its default number of
     intra-op threads and with one thread;
   - extra peak memory: the memory a call needs beyond its inputs. Measured twice,
     by two independent routes:
     * ``tracemalloc`` (numpy only): numpy reports every array buffer to it, so
       ``peak - before`` is the exact high-water mark of array memory the call
       allocated, counted in this process;
     * peak RSS (numpy and torch): each (backend, variant) runs once in a fresh
       child process that builds the inputs, resets the kernel's resident-set
       high-water mark (``/proc/self/clear_refs`` = 5), calls the function once and
       reads ``VmHWM - VmRSS(before)`` from ``/proc/self/status``. This is what the
       operating system actually had to give the call (pages touched), whatever
       the allocator; it is Linux-only.
2. ``reshape_advantages`` (Eqs. 4-8) on 2,000 responses x 2,048 tokens (float32,
   random lengths) versus a plain masked mean over the same (B, T) array, on numpy
   and torch: time ratio (best of ``--repeats``).

Usage::

    python bench/bench_core.py            # full run (about 10 GiB peak, a few minutes)
    python bench/bench_core.py --quick    # tiny shapes, a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any, Callable

import numpy as np

MIB = 2**20


# --------------------------------------------------------------------------- helpers


def _proc_status_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def _reset_rss_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _best_times(fns: dict[Any, Callable[[], Any]], repeats: int) -> dict[Any, float]:
    """Best wall time of each function over ``repeats`` rounds, the functions interleaved
    within each round so that all of them see the same machine load."""
    best = {key: float("inf") for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            result = fn()
            best[key] = min(best[key], time.perf_counter() - start)
            del result
    return best


def _make_logits(tokens: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (1, T, V) visual and blind logits built in place (no temporaries)."""
    rng = np.random.default_rng(seed)
    visual = rng.standard_normal((1, tokens, vocab), dtype=np.float32)
    visual *= 3.0
    blind = rng.standard_normal((1, tokens, vocab), dtype=np.float32)
    blind += visual  # the blind pass: the visual logits, perturbed
    mask = np.ones((1, tokens), dtype=bool)
    return visual, blind, mask


def _to_backend(backend: str, *arrays: np.ndarray) -> list[Any]:
    if backend == "numpy":
        return list(arrays)
    import torch

    return [torch.from_numpy(a) for a in arrays]  # zero-copy: shares the numpy buffers


def _kl_call(backend: str, visual, blind, mask, chunk_size: int | None) -> Callable[[], Any]:
    import pgpo_core

    if backend == "torch":
        import torch

        def call():
            with torch.no_grad():
                return pgpo_core.token_visual_dependency(visual, blind, mask,
                                                         chunk_size=chunk_size)
        return call
    return lambda: pgpo_core.token_visual_dependency(visual, blind, mask, chunk_size=chunk_size)


# --------------------------------------------------------------- child: peak RSS of one call


def _rss_child(backend: str, tokens: int, vocab: int, chunk_size: int | None) -> None:
    """Run in a fresh process: extra peak RSS of one KL call beyond its inputs (bytes)."""
    arrays = _make_logits(tokens, vocab)
    visual, blind, mask = _to_backend(backend, *arrays)
    call = _kl_call(backend, visual, blind, mask, chunk_size)
    call_small = _kl_call(backend, visual[:, :1], blind[:, :1], mask[:, :1], chunk_size)
    call_small()  # first-call imports and lazy initialisation, outside the measurement
    gc.collect()
    _reset_rss_peak()
    before = _proc_status_kib()["VmRSS"]
    result = call()
    peak = _proc_status_kib()["VmHWM"]
    del result
    print(json.dumps({"extra_bytes": (peak - before) * 1024}))


def _rss_extra(backend: str, tokens: int, vocab: int, chunk_size: int | None) -> int:
    cmd = [sys.executable, os.path.abspath(__file__), "--_rss-child", backend, str(tokens),
           str(vocab), str(chunk_size or 0)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["extra_bytes"])


def _tracemalloc_extra(call: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - before


# ------------------------------------------------------------------------------ benchmarks


def bench_kl(tokens: int, vocab: int, chunk_sizes: list[int], repeats: int,
             backends: list[str]) -> list[dict[str, Any]]:
    rows = []
    variants: list[int | None] = [None] + list(chunk_sizes)
    # Peak RSS first, in child processes, before this process holds its own inputs.
    rss = {(b, c): _rss_extra(b, tokens, vocab, c) for b in backends for c in variants}
    arrays = _make_logits(tokens, vocab)
    for backend in backends:
        visual, blind, mask = _to_backend(backend, *arrays)
        _kl_call(backend, visual[:, :1], blind[:, :1], mask[:, :1], None)()  # warm-up
        calls = {chunk: _kl_call(backend, visual, blind, mask, chunk) for chunk in variants}
        # torch: time with its default intra-op threads and with one thread, since the
        # chunked path's many smaller parallel regions are what differs between them.
        threads = [None]
        if backend == "torch":
            import torch

            default_threads = torch.get_num_threads()
            threads = [default_threads] + ([1] if default_threads > 1 else [])
        for n_threads in threads:
            label = backend
            if n_threads is not None:
                torch.set_num_threads(n_threads)
                label = f"torch ({n_threads} thread{'s' if n_threads > 1 else ''})"
            times = _best_times(calls, repeats)
            results = {}
            for chunk, call in calls.items():
                traced = _tracemalloc_extra(call) if backend == "numpy" else None
                results[chunk] = (times[chunk], traced, rss[(backend, chunk)])
            naive_s, naive_traced, naive_rss = results[None]
            for chunk in variants:
                seconds, traced, rss_bytes = results[chunk]
                rows.append(dict(
                    backend=label,
                    variant="naive (chunk_size=None)" if chunk is None else f"chunk_size={chunk}",
                    seconds=seconds, time_ratio=seconds / naive_s,
                    traced=traced,
                    traced_ratio=None if traced is None else traced / naive_traced,
                    rss=rss_bytes,
                    rss_ratio=rss_bytes / naive_rss if naive_rss > 0 else float("nan"),
                ))
        if backend == "torch":
            torch.set_num_threads(default_threads)
    inputs_bytes = 2 * arrays[0].nbytes
    return rows, inputs_bytes


def bench_reshape(responses: int, tokens: int, repeats: int,
                  backends: list[str]) -> list[dict[str, Any]]:
    import pgpo_core

    rng = np.random.default_rng(1)
    dependency = rng.exponential(0.3, size=(responses, tokens)).astype(np.float32)
    lengths = rng.integers(1, tokens + 1, size=(responses, 1))
    mask = np.arange(tokens)[None, :] < lengths
    advantages = rng.standard_normal(responses).astype(np.float32)
    rows = []
    for backend in backends:
        dep, m, adv = _to_backend(backend, dependency, mask, advantages)
        if backend == "torch":
            def plain():
                return (dep * m).sum() / m.sum()
        else:
            def plain():
                return np.sum(dep * m) / np.count_nonzero(m)
        calls = {"plain": plain}
        for threshold in ("fixed", "quantile"):
            def call(threshold=threshold):
                return pgpo_core.reshape_advantages(adv, dep, m, threshold=threshold)
            calls[threshold] = call
        for fn in calls.values():
            fn()  # warm-up
        times = _best_times(calls, repeats)
        for threshold in ("fixed", "quantile"):
            rows.append(dict(backend=backend, threshold=threshold, seconds=times[threshold],
                             plain=times["plain"], ratio=times[threshold] / times["plain"]))
    return rows


# -------------------------------------------------------------------------------- report


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MIB:,.1f}"


def _ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and one repeat: a smoke run, figures meaningless")
    parser.add_argument("--vocab", type=int, default=None, help="V (default 152,064)")
    parser.add_argument("--tokens", type=int, default=None, help="T for the KL (default 2,048)")
    parser.add_argument("--chunk-sizes", default=None, help="comma list (default 128,256)")
    parser.add_argument("--repeats", type=int, default=None, help="best of (default 3; 10 for "
                        "reshape_advantages)")
    parser.add_argument("--responses", type=int, default=None,
                        help="B for reshape_advantages (default 2,000)")
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--_rss-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._rss_child:
        backend, tokens, vocab, chunk = args._rss_child
        _rss_child(backend, int(tokens), int(vocab), int(chunk) or None)
        return

    quick = args.quick
    vocab = args.vocab or (2_048 if quick else 152_064)
    tokens = args.tokens or (64 if quick else 2_048)
    chunks = [int(c) for c in (args.chunk_sizes or ("16" if quick else "128,256")).split(",")]
    repeats = args.repeats or (1 if quick else 3)
    responses = args.responses or (50 if quick else 2_000)
    reshape_tokens = 128 if quick else 2_048
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    import torch

    print(f"# pgpo_core benchmark{' (--quick: smoke run, figures meaningless)' if quick else ''}")
    print()
    print(f"numpy {np.__version__}, torch {torch.__version__} (CPU, {torch.get_num_threads()} "
          f"threads), {os.cpu_count()} CPU cores, python {sys.version.split()[0]}")
    print()

    kl_rows, inputs_bytes = bench_kl(tokens, vocab, chunks, repeats, backends)
    print(f"## Exact KL (token_visual_dependency), B=1, T={tokens:,}, V={vocab:,}, float32 "
          f"logits (inputs {inputs_bytes / MIB:,.0f} MiB)")
    print()
    print(f"Time: best of {repeats} calls, the variants interleaved. Extra peak memory beyond the inputs: `tracemalloc` "
          "(numpy array buffers, exact) and peak RSS of one call in a fresh child process "
          "(`VmHWM - VmRSS` after resetting the high-water mark). Ratios are versus the naive "
          "version on the same backend.")
    print()
    print("| backend | variant | time (s) | time / naive | extra peak, tracemalloc (MiB) "
          "| tracemalloc / naive | extra peak RSS (MiB) | RSS / naive |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in kl_rows:
        print(f"| {r['backend']} | {r['variant']} | {r['seconds']:.3f} | {r['time_ratio']:.3f} "
              f"| {_mib(r['traced'])} | {_ratio(r['traced_ratio'])} | {_mib(r['rss'])} "
              f"| {_ratio(r['rss_ratio'])} |")
    print()

    reshape_rows = bench_reshape(responses, reshape_tokens, 1 if quick else max(repeats, 10),
                                 backends)
    print(f"## reshape_advantages, {responses:,} responses x {reshape_tokens:,} tokens, float32 "
          f"(random lengths), versus a plain masked mean of the same (B, T) array")
    print()
    print("Time: best of", 1 if quick else max(repeats, 10), "calls, interleaved; the plain "
          "masked mean is `sum(x * mask) / count(mask)` in the backend's own operations.")
    print()
    print("| backend | threshold | reshape_advantages (ms) | plain masked mean (ms) | ratio |")
    print("|---|---|---:|---:|---:|")
    for r in reshape_rows:
        print(f"| {r['backend']} | {r['threshold']} | {r['seconds'] * 1e3:.2f} "
              f"| {r['plain'] * 1e3:.2f} | {r['ratio']:.1f} |")


if __name__ == "__main__":
    main()
