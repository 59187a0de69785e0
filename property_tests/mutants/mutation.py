"""Mutation self-test of the conformance suite.

Builds each entry of ``catalogue.py`` as a patched copy of ``pgpo_core`` under its own
package name in a temporary folder, runs the conformance suite against it through
``--pgpo-impl`` (default Hypothesis profile, fixed seed, a fresh example database, on
the entry's backends: numpy, plus torch where a gradient is at stake), and reports which mutants the suite kills and which correct variants it rejects::

    python property_tests/mutants/mutation.py                  # everything
    python property_tests/mutants/mutation.py --quick          # the subset pytest runs
    python property_tests/mutants/mutation.py --only kl-no-clamp eq6-boundary
    python property_tests/mutants/mutation.py --list
    python property_tests/mutants/mutation.py --jobs 8         # 8 entries at a time

Exit status 0 when every mutant is killed and every variant accepted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalogue import ENTRIES, Entry  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "pgpo_core"
DEFAULT_SEED = 0


class StaleEdit(RuntimeError):
    """A catalogue snippet no longer occurs in pgpo_core as stated."""


def package_name(entry: Entry) -> str:
    return f"pgpo_{entry.kind}_" + re.sub(r"\W", "_", entry.name)


def build(entry: Entry, where: Path) -> str:
    """Write the patched copy of pgpo_core for ``entry`` under ``where``; return its
    package name (importable with ``where`` on the path)."""
    name = package_name(entry)
    target = where / name
    shutil.copytree(CORE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for edit in entry.edits:
        path = target / edit.file
        text = path.read_text()
        found = text.count(edit.old)
        if found != edit.count:
            raise StaleEdit(f"{entry.name}: pgpo_core/{edit.file} holds {found} copies of "
                            f"{edit.old!r}, the catalogue expects {edit.count}")
        path.write_text(text.replace(edit.old, edit.new))
    for path in target.glob("*.py"):
        path.write_text(path.read_text().replace("pgpo_core", name))
    return name


@dataclasses.dataclass
class Result:
    entry: Entry
    outcome: str  # "killed", "survived" (mutants); "accepted", "rejected" (variants); "error"
    by: str  # the first failing test, if any
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.outcome in ("killed", "accepted")


def run_one(entry: Entry, where: Path, *, backends: str | None = None,
            seed: int = DEFAULT_SEED) -> Result:
    """Run the conformance suite against ``entry``'s copy (built under ``where``) on
    ``backends`` (default: the entry's own)."""
    where = Path(where)
    backends = backends or entry.backends
    name = build(entry, where)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(where), str(ROOT)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["HYPOTHESIS_PROFILE"] = "default"
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(where / f"hypothesis-{name}")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("PGPO_IMPL", None)
    env.pop("PGPO_BACKENDS", None)
    cmd = [sys.executable, "-m", "pytest", "property_tests", "-m", "conformance",
           "--ignore=property_tests/mutants", f"--pgpo-impl={name}", f"--backends={backends}",
           f"--hypothesis-seed={seed}", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore",
           "--no-header", "-rf"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    by = failed.group(1) if failed else ""
    if proc.returncode == 0:
        outcome = "survived" if entry.kind == "mutant" else "accepted"
    elif proc.returncode == 1 and failed:
        outcome = "killed" if entry.kind == "mutant" else "rejected"
    else:
        outcome = "error"
    return Result(entry, outcome, by, seconds, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the entries marked quick")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these entries")
    parser.add_argument("--backends", default=None,
                        help="override every entry's backends (e.g. numpy,torch,jax)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument("--jobs", type=int, default=1,
                        help="entries run at once, each a pytest process on one thread")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the suite's output for unexpected outcomes")
    args = parser.parse_args(argv)

    entries = [e for e in ENTRIES if (not args.quick or e.quick)
               and (not args.only or e.name in args.only)]
    if args.only and len(entries) != len(set(args.only)):
        parser.error(f"unknown names: {sorted(set(args.only) - {e.name for e in ENTRIES})}")
    if args.list:
        for e in entries:
            print(f"{e.kind:8} {e.name:30} {e.backends:12} {e.covers:18} {e.what}")
        return 0

    if args.jobs < 1:
        parser.error("--jobs: must be >= 1")
    results = []
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pgpo-mutation-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, e, Path(tmp), backends=args.backends, seed=args.seed)
                   for e in entries]
        for future in concurrent.futures.as_completed(futures):
            r = future.result()
            results.append(r)
            e = r.entry
            print(f"{e.kind:8} {e.name:30} {r.outcome:9} {r.seconds:6.1f}s  "
                  f"{args.backends or e.backends:12} {r.by}", flush=True)
            if args.verbose and not r.ok:
                print(r.output[-3000:])
    results.sort(key=lambda r: entries.index(r.entry))
    mutants = [r for r in results if r.entry.kind == "mutant"]
    variants = [r for r in results if r.entry.kind == "variant"]
    killed = sum(r.outcome == "killed" for r in mutants)
    rejected = sum(r.outcome != "accepted" for r in variants)
    print()
    if mutants:
        print(f"mutation score: {killed}/{len(mutants)} mutants killed "
              f"({100 * killed / len(mutants):.0f}%)")
    if variants:
        print(f"false rejections: {rejected}/{len(variants)} correct variants rejected")
    for r in results:
        if not r.ok:
            print(f"  {r.outcome}: {r.entry.name} ({r.entry.what})")
    print(f"backends {args.backends or 'per entry'}, hypothesis seed {args.seed}, default profile; "
          f"{sum(r.seconds for r in results):.0f} s in all, {time.perf_counter() - wall:.0f} s "
          f"wall with {args.jobs} job(s)")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
