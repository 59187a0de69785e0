"""reference_impl.experiments.compare: tables worked out by hand, the study cache (keys, resume,
extension, a partial report) with a fake trainer, and the --quick run end to end."""

import json
import math
import os
from pathlib import Path

import pytest

from reference_impl import config
from reference_impl.experiments import compare
from reference_impl.experiments.compare import main
from reference_impl.experiments.tables import paired_differences, summarize, write_tables
from reference_impl.stats import mean_interval, paired_interval

EVIDENCE = Path(__file__).resolve().parents[2] / "docs" / "evidence"


def rows(final):
    return [
        {"step": 0, "kind": "eval", "accuracy_avg@4": 0.0, "phase": "untrained"},
        {"step": 1, "kind": "train", "reward": 0.1, "grad_norm": 1.0, "entropy": 0.5,
         "response_length": 40.0, "updated": 1.0},
        {"step": 2, "kind": "train", "reward": 0.3, "grad_norm": "nan", "entropy": 0.4,
         "response_length": 44.0, "updated": 1.0},
        {"step": 2, "kind": "eval", "accuracy_avg@4": 0.3, "perception_accuracy": 0.4},
        {"step": 4, "kind": "eval", "accuracy_avg@4": final, "format": 1.0,
         "perception_accuracy": 0.5, "phase": "final"},
    ]


def test_summarize_by_hand():
    s = summarize(rows(0.5), before_rl=0.25)
    assert s["before_rl"] == 0.25 and s["final"] == 0.5 and s["perception_final"] == 0.5
    # Curve 0.25 @ 0, 0.3 @ 2, 0.5 @ 4: trapezoids (0.55 + 0.8) / 2 * 2 = 1.35 over 4 steps.
    assert s["auc"] == pytest.approx(1.35 / 4)
    assert s["grad_norm_mean"] == 1.0  # the "nan" of a skipped step is left out
    assert s["length_last"] == 44.0 and s["steps_without_update"] == 0.0


def test_tables_mean_interval_and_paired_difference(tmp_path):
    runs = {"pgpo": [summarize(rows(0.5), before_rl=0.25), summarize(rows(0.7), before_rl=0.25)],
            "dapo": [summarize(rows(0.4), before_rl=0.25), summarize(rows(0.5), before_rl=0.25)]}
    text = write_tables(runs, str(tmp_path / "t.md"), header="# t")
    pgpo = next(line for line in text.splitlines() if line.startswith("| pgpo |")).split(" | ")
    iv = mean_interval([0.5, 0.7])
    assert pgpo[1] == "2" and pgpo[3] == f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"
    diff = next(line for line in text.splitlines() if line.startswith("| pgpo - dapo |"))
    d = mean_interval([0.1, 0.2])  # paired by seed: 0.5 - 0.4, 0.7 - 0.5
    assert diff.split(" | ")[2] == f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
    assert (tmp_path / "t.md").read_text() == text


def test_paired_differences_use_only_the_seeds_both_completed():
    s = lambda x: summarize(rows(x), before_rl=0.25)  # noqa: E731
    results = {"pgpo": {0: s(0.5), 1: s(0.7), 2: s(0.9)}, "dapo": {0: s(0.4), 2: s(0.6)}}
    d = paired_differences(results)["pgpo - dapo"]["final"]
    want = paired_interval([0.5, 0.9], [0.4, 0.6])
    assert d["n"] == 2 and d["seeds"] == [0, 2]
    assert d["estimate"] == pytest.approx(want.estimate) and d["low"] == pytest.approx(want.low)


# ---------------------------------------------------------------------- the cache key

def test_seed_ranges():
    assert compare.parse_seeds("0-9") == list(range(10))
    assert compare.parse_seeds("3, 0-1,1,7-8") == [0, 1, 3, 7, 8]
    with pytest.raises(ValueError):
        compare.parse_seeds("5-2")


def test_key_same_config_same_key_output_paths_ignored():
    key, payload = compare.config_key(["algo.name=dapo", "train.output_dir=a"])
    # Spelled differently, default written out, other output folder and start: the same run.
    assert compare.config_key(["--algo", "dapo", "rollout.temperature=1",
                               "train.output_dir=b", "checkpoint.resume=auto"])[0] == key
    assert "train.output_dir" not in payload["config"] and payload["runtime"]["device"]
    assert payload["config"]["algo.name"] == "dapo"
    assert compare.config_key(["algo.name=dapo"])[1] == payload


@pytest.mark.parametrize("change", [
    "rollout.temperature=0.7", "train.seed=1", "algo.name=grpo", "algo.pgpo.tau=0.3",
    "data.synthetic_task=simple", "data.chain_facts=3", "model.sft_warmup_steps=10",
    "train.total_steps=50", "optim.lr=3e-4", "eval.k=2", "model.dtype=bfloat16",
    "checkpoint.every=5", "data.chain_filler=2",
])
def test_key_any_field_changed_gives_a_new_key(change):
    base = compare.config_key(["algo.name=pgpo"])[0]
    assert compare.config_key(["algo.name=pgpo", change])[0] != base


def test_an_option_added_later_keeps_earlier_keys_at_its_neutral_value():
    # A study keyed before data.chain_filler existed resumes: at 0 (which draws exactly
    # the earlier chains) the option is not part of the key; at any other value it is.
    argv = [*compare.LOGGING, "algo.name=pgpo", "train.seed=0", "train.total_steps=0"]
    cfg = compare._load(argv)
    for key, neutral in compare.KEYLESS_AT.items():
        assert cfg.flat()[key] == neutral  # a real option, at its default
    assert "data.chain_filler" not in compare.config_key(argv)[1]["config"]
    assert compare.config_key([*argv, "data.chain_filler=0"])[0] == compare.config_key(argv)[0]
    assert compare.config_key([*argv, "data.chain_filler=3"])[1]["config"][
        "data.chain_filler"] == 3


@pytest.mark.parametrize("cell", ["today", "filler8", "noclip"])
def test_studies_run_earlier_keep_their_keys(cell, monkeypatch):
    # The VLM cells' study keys, as compare.py recorded them at commit 5ac308f: every
    # option the trainer gained since must be in KEYLESS_AT at its neutral value, or an
    # earlier study's cached runs silently stop counting and rerun (data.opening_steps
    # did so until it joined KEYLESS_AT). The runtime is pinned to the CPU study's.
    recorded = json.loads((EVIDENCE / "2026-12-07_vlm_cells" / cell / "compare.json")
                          .read_text(encoding="utf-8"))
    monkeypatch.setattr(compare, "_runtime", lambda cfg: dict(recorded["config"]["runtime"]))
    key, payload = compare.study_key([*compare.LOGGING, *recorded["overrides"]])
    assert payload["config"] == recorded["config"]["config"]
    assert key == recorded["study_key"]


def test_key_is_of_the_resolved_config_not_of_the_arguments():
    # DAPO fixes tau = 0 whatever algo.pgpo.tau says: the run is the same, so is its key.
    assert compare.config_key(["algo.name=dapo", "algo.pgpo.tau=0.3"])[0] == \
        compare.config_key(["algo.name=dapo"])[0]


def test_rl_key_follows_its_warmup():
    a = compare.plan(["eval.k=2"], [0], ["pgpo"])[0]
    b = compare.plan(["eval.k=3"], [0], ["pgpo"])[0]
    c = compare.plan(["eval.k=2", "model.sft_warmup_steps=5"], [0], ["pgpo"])[0]
    assert a[0].key != c[0].key and a[1][0].payload["warmup"] == a[0].key
    assert a[1][0].key != c[1][0].key  # the RL configs are equal, their warm-ups are not
    assert a[0].key != b[0].key and a[1][0].key != b[1][0].key
    # train.total_steps is fixed to 0 in the warm-up: a longer RL run reuses its warm-up.
    d = compare.plan(["eval.k=2", "train.total_steps=7"], [0], ["pgpo"])[0]
    assert d[0].key == a[0].key and d[1][0].key != a[1][0].key


def test_algorithms_the_trainer_lacks_are_skipped_typos_are_errors(monkeypatch):
    monkeypatch.setattr(config, "ALGORITHMS", ("pgpo", "dapo", "grpo"))
    accepted, skipped = compare.split_algos(list(compare.DEFAULT_ALGOS))
    assert accepted == ["pgpo", "dapo", "grpo"] and list(skipped) == ["vppo"]
    with pytest.raises(ValueError, match="dapoo"):
        compare.split_algos(["pgpo", "dapoo"])


# ---------------------------------------------------------------------- the study, faked

ACC = {"pgpo": 0.5, "dapo": 0.4, "grpo": 0.3, "pgpo_no_mass": 0.45}


class FakeTrainer:
    """Stands in for ``compare.train``: writes what a run writes (metrics.jsonl, a warm-up
    checkpoint) from the resolved config, and records each call. ``crash_on`` makes the
    n-th call fail half-way (rows written, no checkpoint); ``stop_on`` makes it return as a
    stop signal would (a checkpoint saved, ``stopped_by_signal``)."""

    def __init__(self, crash_on=None, stop_on=None):
        self.calls, self.crash_on, self.stop_on = [], crash_on, stop_on

    def __call__(self, argv):
        from reference_impl.runlog import checkpoint as ckpt
        from reference_impl.config import load_config

        cfg = load_config(argv, check_environment=False)
        out, seed, algo = cfg.train.output_dir, cfg.train.seed, cfg.algo.name
        warmup = cfg.train.total_steps == 0
        self.calls.append(("warmup" if warmup else algo, seed, cfg.checkpoint.resume))
        os.makedirs(out, exist_ok=True)
        acc = 0.2 + 0.01 * seed if warmup else ACC[algo] + 0.02 * seed
        metrics = [{"step": 0, "kind": "eval", "phase": "warmed_up",
                    "accuracy_avg@2": 0.2 + 0.01 * seed, "perception_accuracy": 0.3}]
        if not warmup:
            metrics += [{"step": s, "kind": "train", "reward": acc, "grad_norm": 1.0,
                         "entropy": 0.5, "response_length": 9.0, "updated": 1.0}
                        for s in (1, 2)]
        with open(os.path.join(out, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in metrics)
        n = len(self.calls)
        if n == self.crash_on:
            raise RuntimeError("killed half-way")
        if warmup or n == self.stop_on:
            ckpt.save_checkpoint(os.path.join(out, "checkpoints"), 0, model_state={},
                                 extra={"seed": seed})
        if n == self.stop_on:
            return {"steps": 1, "stopped_by_signal": True}
        if warmup:
            return {"steps": 0, "stopped_by_signal": False}
        final = {"accuracy_avg@2": acc, "perception_accuracy": 0.5, "format": 1.0}
        with open(os.path.join(out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": 2, "kind": "eval", "phase": "final", **final}) + "\n")
        return {"steps": cfg.train.total_steps, "eval_final": final, "stopped_by_signal": False}


def study(tmp_path, *args):
    return main(["--quick", "--probe-batches", "0", "--out", str(tmp_path / "study"), *args])


def test_an_interrupted_study_resumes_and_runs_only_what_is_missing(tmp_path, monkeypatch):
    crashing = FakeTrainer(crash_on=3)  # warm-up 0, pgpo 0, then dapo seed 0 dies half-way
    monkeypatch.setattr(compare, "train", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        study(tmp_path, "--seeds", "0,1", "--algos", "pgpo,dapo")
    assert len(crashing.calls) == 3
    dapo0 = next(p for p in (tmp_path / "study").iterdir() if p.name.startswith("dapo-seed0-"))
    assert (dapo0 / "metrics.jsonl").exists() and not (dapo0 / compare.MARKER).exists()

    fake = FakeTrainer()
    monkeypatch.setattr(compare, "train", fake)
    result = study(tmp_path, "--seeds", "0,1", "--algos", "pgpo,dapo")
    # The half-done run (no marker, no checkpoint of its own) again from the warm-up; seed 1 all.
    assert [c[:2] for c in fake.calls] == [("dapo", 0), ("warmup", 1), ("pgpo", 1), ("dapo", 1)]
    assert fake.calls[0][2].endswith(os.path.join("checkpoints", "step_00000000"))
    assert "warmup-seed0" in fake.calls[0][2]
    assert {a: sorted(r) for a, r in result["runs"].items()} == {"pgpo": [0, 1], "dapo": [0, 1]}
    assert result["missing"] == {}

    again = FakeTrainer()
    monkeypatch.setattr(compare, "train", again)
    study(tmp_path, "--seeds", "0,1", "--algos", "pgpo,dapo")
    assert again.calls == []  # complete: nothing runs


def test_a_stopped_run_resumes_from_its_own_checkpoint(tmp_path, monkeypatch):
    stopping = FakeTrainer(stop_on=2)  # pgpo seed 0 gets a stop signal after saving
    monkeypatch.setattr(compare, "train", stopping)
    result = study(tmp_path, "--seeds", "0", "--algos", "pgpo,dapo")
    assert len(stopping.calls) == 2 and result["runs"] == {}  # the study stopped there
    assert result["missing"] == {"pgpo": [0], "dapo": [0]}
    assert "pgpo seeds 0; dapo seeds 0" in (tmp_path / "study" / "compare.md").read_text()
    fake = FakeTrainer()
    monkeypatch.setattr(compare, "train", fake)
    study(tmp_path, "--seeds", "0", "--algos", "pgpo,dapo")
    assert fake.calls[0] == ("pgpo", 0, "auto") and [c[0] for c in fake.calls] == ["pgpo", "dapo"]


def test_adding_seeds_and_algorithms_runs_only_the_new_runs(tmp_path, monkeypatch):
    fake = FakeTrainer()
    monkeypatch.setattr(compare, "train", fake)
    study(tmp_path, "--seeds", "0-1", "--algos", "pgpo,dapo")
    assert len(fake.calls) == 6
    fake.calls.clear()
    study(tmp_path, "--seeds", "0-2", "--algos", "pgpo,dapo")
    assert [c[:2] for c in fake.calls] == [("warmup", 2), ("pgpo", 2), ("dapo", 2)]
    fake.calls.clear()
    result = study(tmp_path, "--seeds", "0-2", "--algos", "pgpo,dapo,grpo")
    assert [c[:2] for c in fake.calls] == [("grpo", 0), ("grpo", 1), ("grpo", 2)]
    assert all(sorted(r) == [0, 1, 2] for r in result["runs"].values())
    # Another configuration in the same folder: new keys, nothing reused, reported apart.
    fake.calls.clear()
    other = study(tmp_path, "--seeds", "0", "--algos", "pgpo", "optim.lr=3e-4")
    # optim.lr is part of the warm-up's resolved config too (unused there, but not left out).
    assert [c[:2] for c in fake.calls] == [("warmup", 0), ("pgpo", 0)]
    assert sorted(other["runs"]) == ["pgpo"] and list(other["others"].values()) == [12]


def test_the_report_covers_a_partial_study(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "ALGORITHMS", ("pgpo", "dapo", "grpo"))
    monkeypatch.setattr(compare, "train", FakeTrainer())
    study(tmp_path, "--seeds", "0-2", "--algos", "pgpo")
    study(tmp_path, "--seeds", "0,1", "--algos", "dapo")
    # Reported now: everything in the folder, though only grpo (and vppo) is requested.
    result = main(["--quick", "--probe-batches", "0", "--out", str(tmp_path / "study"),
                   "--seeds", "0", "--algos", "grpo,vppo", "--report-only"])
    assert {a: sorted(r) for a, r in result["runs"].items()} == {"pgpo": [0, 1, 2],
                                                                  "dapo": [0, 1]}
    assert result["missing"] == {"grpo": [0, 1, 2], "dapo": [2]} and "vppo" in result["skipped"]
    d = result["paired_differences"]["pgpo - dapo"]["final"]
    assert d["n"] == 2 and d["estimate"] == pytest.approx(0.1)  # 0.5 - 0.4 on seeds 0 and 1
    text = (tmp_path / "study" / "compare.md").read_text()
    assert "Missing: grpo seeds 0-2; dapo seeds 2" in text
    assert "Skipped: vppo: not an algo.name of this trainer" in text
    pgpo = next(line for line in text.splitlines() if line.startswith("| pgpo |")).split(" | ")
    assert pgpo[1] == "3" and pgpo[3].startswith(f"{0.52:.3f} [")  # 0.50, 0.52, 0.54
    saved = json.loads((tmp_path / "study" / "compare.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and saved["runs"]["dapo"].keys() == {"0", "1"}
    assert (tmp_path / "study" / "compare.png").stat().st_size > 100


def test_an_algorithm_added_later_is_probed_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "train", FakeTrainer())
    probed = []

    def fake_probe(argv):
        algos = argv[argv.index("--algos") + 1].split(",")
        probed.append(algos)
        iv = {"estimate": 0.1, "low": 0.0, "high": 0.2, "n": 2}
        return {"ckpt": {a: {"batches": 2, "snr": iv, "cosine": iv, "visual_share": iv,
                             "grad_norm": iv} for a in algos}}

    monkeypatch.setattr(compare, "probe", fake_probe)
    args = ["--quick", "--out", str(tmp_path / "s"), "--seeds", "0"]
    main([*args, "--algos", "pgpo,dapo"])
    result = main([*args, "--algos", "pgpo,dapo,grpo"])
    assert probed == [["pgpo", "dapo"], ["grpo"]]
    assert {a: sorted(r) for a, r in result["probe"].items()} == {a: [0] for a in
                                                                   ("pgpo", "dapo", "grpo")}
    assert "Gradient probe" in (tmp_path / "s" / "compare.md").read_text()


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, monkeypatch):
    """What CI runs: the whole experiment with tiny settings (nothing is learned); run
    again, the complete study runs nothing."""
    out = tmp_path / "cmp"
    result = main(["--quick", "--seeds", "0", "--algos", "pgpo,dapo", "--out", str(out)])
    assert set(result["runs"]) == {"pgpo", "dapo"} and len(result["ran"]) == 4
    assert all(list(v) == [0] and math.isfinite(v[0]["final"]) for v in result["runs"].values())
    for name in ("compare.md", "compare.png", "compare.json"):
        assert (out / name).stat().st_size > 100
    saved = json.loads((out / "compare.json").read_text())
    assert saved["seeds"] == [0] and "pgpo - dapo" in saved["paired_differences"]
    # Both algorithms started RL from the one warm-up of their seed.
    warm = [p for p in out.iterdir() if p.name.startswith("warmup-seed0-")]
    assert len(warm) == 1 and (warm[0] / "checkpoints").is_dir()
    monkeypatch.setattr(compare, "train", lambda argv: pytest.fail(f"ran again: {argv}"))
    monkeypatch.setattr(compare, "probe", lambda argv: pytest.fail(f"probed again: {argv}"))
    again = main(["--quick", "--seeds", "0", "--algos", "pgpo,dapo", "--out", str(out)])
    assert again["ran"] == [] and again["runs"] == result["runs"]
