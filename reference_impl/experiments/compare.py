"""PGPO vs DAPO vs GRPO vs VPPO as a study that accumulates: seeds, identical budgets,
paired intervals, every run cached by its resolved configuration.

    python reference_impl/compare.py                                  # 10 seeds x DEFAULT_ALGOS
    python reference_impl/compare.py --quick                          # a smoke run (CI)
    python reference_impl/compare.py --seeds 0-4 --algos pgpo,dapo    # a part of the study now,
    python reference_impl/compare.py --seeds 0-9                      # ... the rest later
    python reference_impl/compare.py --out runs/compare train.total_steps=200
    python reference_impl/compare.py --report-only                    # tables of what is there

Per seed, the supervised warm-up runs once (``train.total_steps=0`` saves its checkpoint)
and every algorithm starts RL from that checkpoint: the same weights, RNG and data
position, the same configuration (any ``SECTION.FIELD=VALUE`` override applies to all),
only ``algo.name`` changed. The seed is the unit of replication; algorithms are compared
by paired differences over seeds with Student-t 95% intervals.

**The study folder accumulates.** Every warm-up and every (seed, algorithm) RL run has
its own folder under ``--out``, named by a key: the SHA-256 of the run's fully resolved
trainer configuration (:meth:`Config.flat`, every key with its default filled in, so
``rollout.temperature=1`` and ``=1.0`` or ``--algo dapo`` and ``algo.name=dapo`` are the
same run), less the output paths (``train.output_dir``, ``checkpoint.resume``), plus the
device and compute dtype it resolves to on this machine and, for an RL run, the key of
the warm-up it starts from. So the task (``data.*``) is part of the key, and a changed
configuration gets new folders and never reuses another configuration's result::

    <out>/warmup-seed3-<key>/            the trainer's output_dir (checkpoints, metrics.jsonl)
    <out>/pgpo-seed3-<key>/              an RL run from that warm-up's checkpoint
    <out>/probe-seed3-<key>/             the gradient probe of some algorithms at that warm-up
    <out>/*/COMPLETE.json                written last (atomically) when a run has finished
    <out>/compare.md|json|png            the report over every complete run of this study

A run counts as done only when its ``COMPLETE.json`` is there and names the folder's
key. Run again with the same arguments, an interrupted study runs only what is missing:
a folder without the marker whose own checkpoint is intact resumes from it
(``checkpoint.resume=auto``, the trainer's exact resume); one without a checkpoint of its
own is emptied and run again. A stop signal (Ctrl-C, SIGTERM) lets the current run save
its checkpoint, then the report is written over what is complete and the study exits.
Seeds and algorithms can be added later (``--seeds 0-9 --algos pgpo,dapo,grpo``): only
the new runs run. The report covers every complete run of this study configuration in
the folder (requested now or earlier), pairs two algorithms only over the seeds where
both are complete, says which runs are still missing, which requested algorithms this
trainer does not have (names outside :data:`reference_impl.algorithms.REGISTRY`) and how
many runs of other configurations the folder holds.

Per run it reads ``metrics.jsonl``: held-out accuracy after the warm-up and after RL,
the area under the held-out curve (mean accuracy over the evaluations from the
warm-up point to the end, trapezoidal in RL steps), the perception accuracy, the train
entropy and response length, and collapse indicators (final format reward, entropy of
the last quarter, steps without an update). With ``--probe-batches K`` it also runs
:mod:`reference_impl.experiments.probe_gradients` at every seed's warm-up checkpoint (gradient
signal-to-noise of each algorithm on the same K rollout batches; cached per algorithm
in the same way, so an algorithm added later is probed alone, on the same batches when
the machine draws them the same way).

Writes ``<out>/compare.md`` (tables), ``<out>/compare.json`` (every number) and
``<out>/compare.png`` (held-out accuracy, entropy, response length and gradient norm over
RL steps: mean over seeds with a 95% band).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Mapping, Sequence


from reference_impl.experiments.tables import (accuracy_key, mean_or_nan, paired_differences,
                                               plot, summarize, write_tables)

DEFAULT_ALGOS = ("pgpo", "dapo", "grpo", "vppo")
"""The study's algorithms; one the trainer does not accept as ``algo.name`` (checked at
run time against :data:`reference_impl.config.ALGORITHMS`) is skipped, and the report
says so."""
DEFAULT_SEEDS = "0-9"
QUICK = ("model.sft_warmup_steps=4", "train.total_steps=2", "eval.every=1",
         "data.eval_size=4", "eval.k=2", "rollout.prompts_per_step=4",
         "optim.mini_batch_size=2", "rollout.max_response_length=16")
"""``--quick``: a smoke run of the whole pipeline in about a minute (nothing is learned)."""
QUICK_SEEDS = "0,1"

MARKER = "COMPLETE.json"
"""Written last, atomically, into a run's folder when the run has finished."""
KEY_FORMAT = "pgpo-compare-run/1"
"""Part of every hashed key: bump it when what a key means changes."""
EXCLUDED_KEYS = ("train.output_dir", "checkpoint.resume")
"""Output paths: where a run writes (and resumes from) is not what it computes. An RL run's
starting point enters its key as the warm-up's key instead."""
KEYLESS_AT = {"data.chain_filler": 0, "data.opening_steps": 0}
"""Options added to the trainer after :data:`KEY_FORMAT` was fixed, each with the value that
reproduces the earlier runs exactly (tested with the option): at that value an option is
left out of the key, so a study run before it existed stays valid and resumes. Any other
value enters the key like every option."""
LOGGING = ("logging.progress_bar=false", "logging.html_report=false",
           "logging.plot=false", "logging.tensorboard=false")


# ---------------------------------------------------------------------- the cache

def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,1,5-7"`` -> sorted distinct seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash:
            if int(high) < int(low):
                raise ValueError(f"--seeds: empty range {part!r}")
            seeds.update(range(int(low), int(high) + 1))
        else:
            seeds.add(int(part))
    return sorted(seeds)


def split_algos(requested: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``(accepted, {skipped: why})``: the requested algorithms this trainer accepts as
    ``algo.name``, and those it does not. A name that is neither an algorithm of the
    trainer nor one of :data:`DEFAULT_ALGOS` is a typo: ``ValueError``."""
    from reference_impl.config import ALGORITHMS

    accepted, skipped = [], {}
    for algo in dict.fromkeys(requested):
        if algo in ALGORITHMS:
            accepted.append(algo)
        elif algo in DEFAULT_ALGOS:
            skipped[algo] = ("not an algo.name of this trainer (reference_impl.config."
                             f"ALGORITHMS: {', '.join(ALGORITHMS)})")
        else:
            raise ValueError(f"--algos: unknown algorithm {algo!r}; the trainer has "
                             f"{', '.join(ALGORITHMS)}")
    return accepted, skipped


def _runtime(cfg) -> dict[str, str]:
    """The device and compute dtype ``cfg`` resolves to on this machine (``auto``
    settings), so that a CPU study continued on a GPU does not reuse CPU runs."""
    import torch

    from reference_impl.policy.model import resolve_dtype

    cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto"
                                          and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    return {"device": device.type, "dtype": str(resolve_dtype(cfg, device)).split(".")[-1]}


def _load(argv: Sequence[str]):
    from reference_impl.config import load_config

    return load_config([*argv, "train.output_dir=unused"], check_environment=False)


def resolved_config(argv: Sequence[str], cfg=None) -> dict[str, Any]:
    """``{"section.field": value}`` of the trainer configuration ``argv`` resolves to,
    every key present, less :data:`EXCLUDED_KEYS`."""
    cfg = _load(argv) if cfg is None else cfg
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in cfg.flat().items()
            if k not in EXCLUDED_KEYS and not (k in KEYLESS_AT and v == KEYLESS_AT[k])}


def hash_key(payload: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key of a JSON-able mapping (sorted keys, fixed separators)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_key(argv: Sequence[str], **extra: Any) -> tuple[str, dict[str, Any]]:
    """``(key, payload)``: the key of the run ``argv`` configures; ``payload`` is what was
    hashed (the resolved configuration, the runtime device and dtype, ``extra``)."""
    cfg = _load(argv)
    payload = {"format": KEY_FORMAT, "config": resolved_config(argv, cfg),
               "runtime": _runtime(cfg), **extra}
    return hash_key(payload), payload


@dataclasses.dataclass
class Run:
    """One cached unit of the study: a warm-up, an RL run or a probe."""

    kind: str  # "warmup" | "rl" | "probe"
    seed: int
    algos: tuple[str, ...]  # () for a warm-up
    argv: list[str]  # trainer (or probe) arguments, output paths excluded
    key: str
    payload: dict[str, Any]
    warmup: "Run | None" = None

    @property
    def folder(self) -> str:
        name = {"warmup": "warmup", "probe": "probe"}.get(self.kind) or self.algos[0]
        return f"{name}-seed{self.seed}-{self.key}"


def plan(common: Sequence[str], seeds: Sequence[int], algos: Sequence[str],
         probe_batches: int = 0) -> list[tuple[Run, list[Run], dict[str, str]]]:
    """Per seed ``(warm-up, RL runs, {algo: probe key})``, every run keyed."""
    out = []
    for seed in seeds:
        argv = [*common, "algo.name=pgpo", f"train.seed={seed}", "train.total_steps=0"]
        warm = Run("warmup", seed, (), argv, *config_key(argv))
        rl, probes = [], {}
        for algo in algos:
            argv = [*common, f"algo.name={algo}", f"train.seed={seed}"]
            run = Run("rl", seed, (algo,), argv, *config_key(argv, warmup=warm.key), warmup=warm)
            rl.append(run)
            if probe_batches >= 2:
                probes[algo] = hash_key({"format": KEY_FORMAT, "probe_of": run.key,
                                         "batches": probe_batches})
        out.append((warm, rl, probes))
    return out


def study_key(common: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The key of the study's shared configuration (the overrides resolved with a fixed
    algorithm and seed): runs of one study carry it, so the report never mixes
    configurations."""
    return config_key([*common, "algo.name=pgpo", "train.seed=0"])


def read_marker(folder: str, key: str | None = None) -> dict[str, Any] | None:
    """The completion marker of ``folder`` (None when missing, unreadable, or naming
    another key than ``key``)."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not os.path.basename(
            os.path.normpath(folder)).endswith(f"-{marker.get('key')}"):
        return None
    return marker if key is None or marker.get("key") == key else None


def write_marker(folder: str, marker: Mapping[str, Any]) -> None:
    from reference_impl.runlog.files import atomic_write_text

    atomic_write_text(os.path.join(folder, MARKER),
                      json.dumps(marker, indent=2, default=str) + "\n")


def complete_runs(out: str) -> list[dict[str, Any]]:
    """Every complete run under ``out`` (its marker, with ``folder`` added)."""
    found = []
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        marker = read_marker(os.path.join(out, name))
        if marker is not None:
            found.append({**marker, "folder": name})
    return found


@functools.cache
def _environment() -> dict[str, Any]:
    """What the key leaves out but a reader may want: library versions, threads, commit."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"torch": torch.__version__, "transformers": installed("transformers"),
            "threads": torch.get_num_threads(), "commit": commit or None,
            "python": sys.version.split()[0]}


class StudyStopped(Exception):
    """A stop signal ended a run early (its checkpoint is saved); the study stops too."""


def train(argv: list[str]) -> dict[str, Any]:
    """One trainer run in this process (``reference_impl.train.main``); tests replace it."""
    from reference_impl.train import main as train_main

    return train_main(argv)


def probe(argv: list[str]) -> dict[str, Any]:
    """One gradient probe in this process (``probe_gradients.main``); tests replace it."""
    from reference_impl.experiments.probe_gradients import main as probe_main

    return probe_main(argv)


def _own_checkpoint(folder: str) -> str | None:
    from reference_impl.runlog import checkpoint as ckpt

    try:
        found = ckpt.find_latest(os.path.join(folder, "checkpoints"), checksums=True)
    except ckpt.CheckpointError:
        return None
    return None if found is None else str(found)


def ensure(run: Run, out: str, *, study: str, log: Callable[[str], None] = print
           ) -> tuple[dict[str, Any], bool]:
    """``(marker, ran)``: run ``run`` unless its folder is complete. A folder without the
    marker resumes from its own intact checkpoint, or is emptied and started over."""
    folder = os.path.join(out, run.folder)
    marker = read_marker(folder, run.key)
    if marker is not None:
        return marker, False
    own = _own_checkpoint(folder)
    if own is None:
        shutil.rmtree(folder, ignore_errors=True)
        if run.kind == "warmup":
            start = "none"
        else:
            start = str(read_marker(os.path.join(out, run.warmup.folder),
                                    run.warmup.key)["checkpoint"])
            start = os.path.join(out, start)
    else:
        start = "auto"
    os.makedirs(folder, exist_ok=True)
    log(f"[compare] {run.folder}: {'resuming' if own else 'running'}")
    t0 = time.perf_counter()
    summary = train([*run.argv, f"train.output_dir={folder}", f"checkpoint.resume={start}"])
    wall = time.perf_counter() - t0
    if summary.get("stopped_by_signal"):
        raise StudyStopped(f"{run.folder}: stopped by a signal at step {summary.get('steps')}")
    marker = {"format": KEY_FORMAT, "kind": run.kind, "key": run.key, "seed": run.seed,
              "algo": run.algos[0] if run.algos else None, "study_key": study,
              "warmup_key": run.warmup.key if run.warmup else None,
              "payload": run.payload, "argv": run.argv, "resumed": own is not None,
              "wall_time_s": wall, "environment": _environment(),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    if run.kind == "warmup":
        latest = _own_checkpoint(folder)
        if latest is None or summary.get("steps") != 0:
            raise RuntimeError(f"{folder}: the warm-up ended without its checkpoint")
        marker["checkpoint"] = os.path.relpath(latest, out)
    else:
        total = run.payload["config"]["train.total_steps"]
        if "eval_final" not in summary or (total is not None and summary.get("steps") != total):
            raise RuntimeError(f"{folder}: the run ended at step {summary.get('steps')} "
                               "without its final evaluation")
    write_marker(folder, marker)
    return marker, True


def ensure_probe(warm: dict[str, Any], seed: int, algos: Sequence[str],
                 keys: Mapping[str, str], common: Sequence[str], out: str, *, batches: int,
                 study: str, log: Callable[[str], None] = print) -> bool:
    """Probe the algorithms of ``keys`` not yet probed at ``seed``'s warm-up (one probe
    run over all of them, so they share the rollout batches); True if it ran."""
    done = {r["key"] for m in complete_runs(out) if m.get("kind") == "probe"
            for r in m.get("results", {}).values()}
    missing = [a for a in algos if keys[a] not in done]
    if not missing:
        return False
    key = hash_key({"format": KEY_FORMAT, "probes": sorted(keys[a] for a in missing)})
    folder = os.path.join(out, f"probe-seed{seed}-{key}")
    shutil.rmtree(folder, ignore_errors=True)  # a probe does not resume: start over
    os.makedirs(folder)
    log(f"[compare] {os.path.basename(folder)}: probing {', '.join(missing)}")
    t0 = time.perf_counter()
    got = probe([*common, f"train.seed={seed}", "--checkpoint",
                 os.path.join(out, warm["checkpoint"]), "--batches", str(batches),
                 "--algos", ",".join(missing), "--out", folder])
    results = next(iter(got.values()))
    write_marker(folder, {
        "format": KEY_FORMAT, "kind": "probe", "key": key, "seed": seed, "study_key": study,
        "warmup_key": warm["key"], "batches": batches,
        "wall_time_s": time.perf_counter() - t0, "environment": _environment(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "results": {a: {"key": keys[a], **results[a]} for a in missing}})
    return True


def _seed_list(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts, seeds = [], sorted(seeds)
    for _, group in itertools.groupby(enumerate(seeds), lambda p: p[1] - p[0]):
        g = [s for _, s in group]
        parts.append(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}")
    return ",".join(parts) or "none"


def collect(out: str, study: str, *, seeds: Sequence[int] = (), algos: Sequence[str] = (),
            probe_batches: int = 0) -> dict[str, Any]:
    """What the study folder holds for study key ``study``: per-run summaries of every
    complete RL run (``{algo: {seed: summary}}``, algorithms in the order ``algos`` then
    as found), their metric rows and warm-up points, the probe per algorithm, the runs
    missing from the grid (requested or present seeds x algorithms), and the complete
    runs of other study configurations (``{study key: count}``)."""
    from reference_impl.runlog.metrics import read_metrics

    markers = complete_runs(out)
    mine = [m for m in markers if m.get("study_key") == study]
    others: dict[str, int] = {}
    for m in markers:
        if m.get("study_key") != study:
            others[m.get("study_key")] = others.get(m.get("study_key"), 0) + 1
    warm = {m["key"]: m for m in mine if m["kind"] == "warmup"}
    rl = sorted((m for m in mine if m["kind"] == "rl" and m.get("warmup_key") in warm),
                key=lambda m: (m["seed"], m["finished"]))
    order = list(dict.fromkeys([*algos, *(m["algo"] for m in rl)]))
    results: dict[str, dict[int, dict[str, float]]] = {a: {} for a in order}
    rows: dict[str, dict[int, list[dict]]] = {a: {} for a in order}
    starts: dict[str, dict[int, float]] = {a: {} for a in order}
    warm_rows: dict[str, list[dict]] = {}
    for m in rl:  # a later marker of the same (algo, seed) replaces an earlier one
        w = warm[m["warmup_key"]]
        if w["key"] not in warm_rows:
            warm_rows[w["key"]] = read_metrics(os.path.join(out, w["folder"], "metrics.jsonl"))
        wr = warm_rows[w["key"]]
        acc_key = accuracy_key(wr)
        warmed = next((r for r in wr if r.get("phase") == "warmed_up"), {})  # eval.at_start
        before = warmed.get(acc_key, math.nan) if acc_key else math.nan
        run_rows = read_metrics(os.path.join(out, m["folder"], "metrics.jsonl"))
        rows[m["algo"]][m["seed"]] = run_rows
        summary = summarize(run_rows, before_rl=None if math.isnan(before) else before,
                            perception_before=warmed.get("perception_accuracy"))
        starts[m["algo"]][m["seed"]] = summary["before_rl"]
        results[m["algo"]][m["seed"]] = summary
    all_seeds = sorted(set(seeds) | {m["seed"] for m in rl})
    missing = {a: [s for s in all_seeds if s not in results[a]] for a in order}
    probe_results: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in order}
    for m in sorted((m for m in mine if m["kind"] == "probe"
                     and m.get("batches") == probe_batches), key=lambda m: m.get("finished", "")):
        for algo, r in m.get("results", {}).items():
            if algo in probe_results and "snr" in r:  # else: < 2 informative batches
                probe_results[algo][m["seed"]] = r
    wall = {m["folder"]: m.get("wall_time_s", math.nan) for m in mine}
    environments = sorted({json.dumps({k: v for k, v in m.get("environment", {}).items()},
                                      sort_keys=True) for m in mine})
    return {"results": results, "rows": rows, "starts": starts, "missing": missing,
            "probe": probe_results, "others": others, "wall_time_s": wall,
            "warmups": sorted(w["seed"] for w in warm.values()),
            "environments": [json.loads(e) for e in environments]}


def report(out: str, study: str, *, seeds: Sequence[int], algos: Sequence[str],
           skipped: Mapping[str, str], overrides: Sequence[str], probe_batches: int,
           payload: Mapping[str, Any], ran: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``compare.md``, ``compare.json`` and ``compare.png`` over every complete run
    of study ``study`` in ``out``; returns what :func:`collect` found plus the paired
    differences."""
    found = collect(out, study, seeds=seeds, algos=algos, probe_batches=probe_batches)
    results = {a: r for a, r in found["results"].items() if r}
    complete_seeds = sorted({s for r in results.values() for s in r})
    wall = found["wall_time_s"]
    warm_t = [v for k, v in wall.items() if k.startswith("warmup-")]
    rl_t = [v for k, v in wall.items() if not k.startswith(("warmup-", "probe-"))]
    lines = [f"# {' vs '.join(results) or 'no complete runs yet'}: "
             f"{len(complete_seeds)} seeds", "",
             f"Study {study} in `{out}` (runtime {payload['runtime']['device']}, "
             f"{payload['runtime']['dtype']}); overrides: "
             f"{' '.join(overrides) or '(defaults)'}. Seeds with a complete run: "
             f"{_seed_list(complete_seeds)}. Mean over seeds [95% t-interval]. Wall time "
             f"{sum(v for v in wall.values() if math.isfinite(v)) / 60:.1f} min in all "
             f"(warm-up {mean_or_nan(warm_t):.0f} s, RL run {mean_or_nan(rl_t):.0f} s each, on average; "
             f"{len(ran)} run(s) this time).", ""]
    missing = {a: s for a, s in found["missing"].items() if s}
    lines.append("Missing: " + ("; ".join(f"{a} seeds {_seed_list(s)}"
                                          for a, s in missing.items()) or "nothing")
                 + " (run compare.py again with the same overrides to complete them).")
    for algo, why in skipped.items():
        lines.append(f"Skipped: {algo}: {why}.")
    if found["others"]:
        lines.append("Not in these tables: " + ", ".join(
            f"{n} complete run(s) of study {k}" for k, n in found["others"].items())
                     + " (another configuration; see each run's COMPLETE.json).")
    if len(found["environments"]) > 1:
        lines.append("Runs come from more than one environment: " + "; ".join(
            json.dumps(e, sort_keys=True) for e in found["environments"]) + ".")
    header = "\n".join(lines)
    probe_lists = {a: [r[s] for s in sorted(r)] for a, r in found["probe"].items() if r}
    table = write_tables(results, os.path.join(out, "compare.md"), header=header,
                         probe=probe_lists or None)
    if results:
        plot({a: [found["rows"][a][s] for s in sorted(r)] for a, r in results.items()},
             {a: [found["starts"][a][s] for s in sorted(r)] for a, r in results.items()},
             os.path.join(out, "compare.png"))
    diffs = paired_differences(results)
    with open(os.path.join(out, "compare.json"), "w", encoding="utf-8") as f:
        json.dump({"study_key": study, "config": payload, "overrides": list(overrides),
                   "seeds": complete_seeds, "algos": list(results), "skipped": dict(skipped),
                   "missing": missing, "other_studies": found["others"],
                   "runs": results, "paired_differences": diffs,
                   "probe": found["probe"], "probe_batches": probe_batches,
                   "wall_time_s": wall, "ran_now": list(ran),
                   "environments": found["environments"]}, f, indent=2)
    print(table)
    return {"runs": results, "probe": found["probe"], "paired_differences": diffs,
            "missing": missing, "skipped": dict(skipped), "ran": list(ran),
            "others": found["others"]}


# ---------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="compare.py", description=__doc__.split("\n\n")[0],
        epilog="Other arguments are SECTION.FIELD=VALUE overrides applied to every run.")
    parser.add_argument("--out", default="runs/compare", help="the study folder")
    parser.add_argument("--algos", default=",".join(DEFAULT_ALGOS),
                        help="comma-separated algo names (those the trainer lacks are skipped)")
    parser.add_argument("--seeds", default=DEFAULT_SEEDS, help="seeds: 0-9, 0,1,2 or 0-4,7")
    parser.add_argument("--probe-batches", type=int, default=8,
                        help="gradient-probe batches at each warm-up checkpoint (0 = no probe)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: seeds {QUICK_SEEDS}, a few steps, tiny evaluations")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: the report over the complete runs in --out")
    args, overrides = parser.parse_known_args(argv)
    if args.quick:
        overrides = [*QUICK, *overrides]
        if args.seeds == parser.get_default("seeds"):
            args.seeds = QUICK_SEEDS
        args.probe_batches = min(args.probe_batches, 2)
    try:
        seeds = parse_seeds(args.seeds)
        algos, skipped = split_algos([a.strip() for a in args.algos.split(",") if a.strip()])
    except ValueError as err:
        parser.error(str(err))
    common = [*overrides, *LOGGING]
    study, payload = study_key(common)
    probing = args.probe_batches >= 2
    os.makedirs(args.out, exist_ok=True)
    ran: list[str] = []
    try:
        for warm, rl_runs, probe_keys in ([] if args.report_only else
                                          plan(common, seeds, algos, args.probe_batches)):
            warm_marker, did = ensure(warm, args.out, study=study)
            ran += [warm.folder] if did else []
            if probing and ensure_probe({**warm_marker, "folder": warm.folder}, warm.seed,
                                        algos, probe_keys, common, args.out,
                                        batches=args.probe_batches, study=study):
                ran.append(f"probe-seed{warm.seed}")
            for run in rl_runs:
                _, did = ensure(run, args.out, study=study)
                ran += [run.folder] if did else []
    except StudyStopped as stop:
        print(f"[compare] {stop}; the report covers what is complete", file=sys.stderr)
    return report(args.out, study, seeds=seeds, algos=algos, skipped=skipped,
                  overrides=overrides, probe_batches=args.probe_batches if probing else 0,
                  payload=payload, ran=ran)

