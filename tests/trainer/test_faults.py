"""Faults a user can cause end cleanly, and a killed run resumes with nothing lost or
duplicated (issue 12). Unit checks first (no model), then tiny end-to-end runs."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import comparable_metrics, tiny_args, varied_rewards  # noqa: E402

from reference_impl.runlog import checkpoint as ckpt  # noqa: E402
from reference_impl.data import sources as data_mod  # noqa: E402
from reference_impl.loop import preflight  # noqa: E402
from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.policy import model as policy_model  # noqa: E402
from reference_impl.config import load_config  # noqa: E402
from reference_impl.policy.distributed import DistEnv  # noqa: E402
from reference_impl.runlog.metrics import MetricsLogger, read_metrics  # noqa: E402
from reference_impl.train import cli, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Wall times (timing_s/* keys, and the rows of kind "timing" that hold a save's) differ
# between identical runs: left out of every comparison.


# ------------------------------------------------------------------ helpers

def save(directory, step, value=1.0):
    return ckpt.save_checkpoint(directory, step, model_state={"w": torch.full((4,), value)},
                                extra={"step": step})


@contextlib.contextmanager
def small_tmpfs(path, size_kib, *, read_only=False):
    """A tmpfs of ``size_kib`` mounted at ``path``; skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size_kib}k" + (",ro" if read_only else "")
    if not shutil.which("mount") or (hasattr(os, "geteuid") and os.geteuid() != 0):
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN); not available here")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder, leave_bytes):
    """Fill a file system up to ``leave_bytes`` of free space."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))


def no_model_built(*a, **k):
    raise AssertionError("a model was built before the fault was reported")


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ logs follow the checkpoint

def test_truncation_drops_a_half_written_line_and_appending_repairs_the_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "kind": "train", "x": 1}\n{"step": 2, "kind": "train", "x": 2}\n'
                    '{"step": 3, "kind": "tr')
    logger = MetricsLogger(str(tmp_path), tensorboard=False, progress=False)
    assert logger.truncate_after(2) == 2  # the step-2 row and the broken line
    assert read_metrics(str(path)) == [{"step": 1, "kind": "train", "x": 1}]
    # Appending after a crash that left a partial line: the partial line goes first.
    path.write_text('{"step": 1, "kind": "train", "x": 1}\n{"step": 2, "ki')
    logger = MetricsLogger(str(tmp_path), tensorboard=False, progress=False)
    logger.log(2, {"x": 2.5})
    assert path.read_text() == ('{"step": 1, "kind": "train", "x": 1}\n'
                                '{"step": 2, "kind": "train", "x": 2.5}\n')
    # Non-UTF-8 garbage is dropped too, with a warning when only reading.
    with open(path, "ab") as f:
        f.write(b"\xff\xfe\n")
    with pytest.warns(RuntimeWarning, match="skipped 1 line"):
        assert len(read_metrics(str(path))) == 2


def test_tensorboard_purges_rerun_steps_and_warmup_has_its_own_axis(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = MetricsLogger(str(tmp_path), progress=False)
    for i in (1, 2, 3):
        first.log(0, {"sft_step": i, "sft_loss": 10.0 - i}, kind="sft")
    for s in (1, 2, 3, 4):
        first.log(s, {"reward": float(s)})
    first.close()
    time.sleep(1.1)  # a second events file (the names carry the time in seconds)
    # Resumed from step 2: steps 3 and 4 are logged again with other values.
    again = MetricsLogger(str(tmp_path), progress=False, purge_step=3)
    for s in (3, 4):
        again.log(s, {"reward": 10.0 * s})
    again.close()

    main_run = EventAccumulator(str(tmp_path / "tensorboard"))
    main_run.Reload()
    points = [(e.step, e.value) for e in main_run.Scalars("train/reward")]
    assert points == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    warm = EventAccumulator(str(tmp_path / "tensorboard" / "warmup"))
    warm.Reload()
    assert [(e.step, e.value) for e in warm.Scalars("sft/sft_loss")] == \
        [(1, 9.0), (2, 8.0), (3, 7.0)]


# ------------------------------------------------------------------ resume from damage

def _damage(kind, path):
    if kind == "bad_hash":
        data = bytearray((path / "model.pt").read_bytes())
        data[-30] ^= 0xFF
        (path / "model.pt").write_bytes(bytes(data))
    elif kind == "truncated":
        data = (path / "model.pt").read_bytes()
        (path / "model.pt").write_bytes(data[:len(data) // 2])
    elif kind == "no_manifest":
        (path / "manifest.json").unlink()
    elif kind == "manifest_not_json":
        (path / "manifest.json").write_text('{"format_version": 1, "st')
    elif kind in ("no_files", "files_list", "files_empty"):
        manifest = json.loads((path / "manifest.json").read_text())
        if kind == "no_files":
            del manifest["files"]
        else:
            manifest["files"] = [] if kind == "files_list" else {}
        (path / "manifest.json").write_text(json.dumps(manifest))
    elif kind == "latest_not_utf8":
        (path.parent / "latest").write_bytes(b"\xff\xfe\xfa")
    else:
        raise ValueError(kind)


KINDS = ["bad_hash", "truncated", "no_manifest", "manifest_not_json", "no_files",
         "files_list", "files_empty"]


@pytest.mark.parametrize("kind", KINDS + ["latest_not_utf8"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, kind):
    save(tmp_path, 1, 1.0)
    save(tmp_path, 2, 2.0)
    newest = save(tmp_path, 3, 3.0)
    _damage(kind, newest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = ckpt.load_latest_intact(tmp_path)
    expected = 3 if kind == "latest_not_utf8" else 2
    assert found.step == expected
    assert torch.equal(found.model_state["w"], torch.full((4,), float(expected)))


@pytest.mark.parametrize("kind", ["truncated", "no_manifest", "bad_hash"])
def test_resume_refuses_when_every_checkpoint_is_damaged(tmp_path, kind):
    for step in (1, 2):
        _damage(kind, save(tmp_path, step))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ckpt.CheckpointError, match=rf"^{tmp_path}: no intact checkpoint.*"
                                                        r"step_00000002.*step_00000001"):
            ckpt.load_latest_intact(tmp_path)
    assert ckpt.load_latest_intact(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("kind", ["truncated", "bad_hash"])
def test_trainer_refuses_to_start_over_damaged_checkpoints(tmp_path, monkeypatch, kind):
    out = tmp_path / "run"
    _damage(kind, save(out / "checkpoints", 2))
    (out / "metrics.jsonl").write_text('{"step": 1, "kind": "train"}\n')
    if kind == "truncated":  # found by the sizes, before any model is built
        monkeypatch.setattr(trainer_mod, "build_policy", no_model_built)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ckpt.CheckpointError, match=r"checkpoint\.resume=auto: .*checkpoints: "
                                                       r"no intact checkpoint"):
            main(tiny_args(out, "train.total_steps=1", "checkpoint.resume=auto"))
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "kind": "train"}\n'


def test_a_damaged_checkpoint_named_by_path_is_refused_before_the_model(tmp_path, no_model):
    path = save(tmp_path / "ck", 3)
    _damage("no_files", path)
    with pytest.raises(ckpt.CheckpointError, match=r"^checkpoint\.resume=.*step_00000003.*"
                                                   r"malformed manifest"):
        _trainer(tmp_path, f"checkpoint.resume={path}")
    with pytest.raises(ckpt.CheckpointError, match=r"^checkpoint\.resume=.*no checkpoint folder"):
        _trainer(tmp_path, f"checkpoint.resume={tmp_path}")


def test_resaving_a_step_never_leaves_latest_naming_a_missing_folder(tmp_path, monkeypatch):
    save(tmp_path, 1, 1.0)
    save(tmp_path, 2, 2.0)
    checks = []

    def check_latest():
        name = ckpt.read_latest_pointer(tmp_path)
        ckpt.verify_checkpoint(tmp_path / name)  # raises if missing or incomplete
        checks.append(name)

    for name in ("_exchange", "fsync_dir"):
        real = getattr(ckpt, name)
        monkeypatch.setattr(ckpt, name, lambda *a, _real=real: (check_latest(), _real(*a))[1])
    real_replace = os.replace
    monkeypatch.setattr(ckpt.os, "replace",
                        lambda *a, **k: (check_latest(), real_replace(*a, **k))[1])
    save(tmp_path, 2, 5.0)
    check_latest()
    assert len(checks) > 3
    assert torch.equal(ckpt.load_checkpoint(tmp_path).model_state["w"], torch.full((4,), 5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001",
                                                          "step_00000002"]


def test_resaving_without_an_atomic_exchange_still_works(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "_exchange", lambda a, b: False)
    save(tmp_path, 2, 2.0)
    save(tmp_path, 2, 7.0)
    assert torch.equal(ckpt.load_checkpoint(tmp_path).model_state["w"], torch.full((4,), 7.0))


def test_first_nonfinite_flags_nan_inf_and_diverged_weights():
    ok = {"a": torch.ones(3), "b": [torch.zeros(2), torch.tensor([1, 2])]}
    assert ckpt.first_nonfinite(ok) is None
    for bad in (float("nan"), float("inf"), 1e30):
        state = {"a": torch.ones(3), "b": [torch.zeros(2), torch.tensor([1.0, bad])]}
        assert ckpt.first_nonfinite(state) == "b.1"


# ------------------------------------------------------------------ full disk

def test_disk_full_while_saving_or_logging_is_reported_and_recoverable(tmp_path):
    with small_tmpfs(tmp_path / "small", 1024) as disk:
        save(disk / "checkpoints", 1)
        with pytest.raises(ckpt.CheckpointError, match=r"no space left on the device.*step 2 "
                                                       r"\(\d+ MiB free; one checkpoint needs "
                                                       r"about 4 MiB\)"):
            ckpt.save_checkpoint(disk / "checkpoints", 2,
                                 model_state={"w": torch.zeros(2**20)})  # 4 MiB
        assert sorted(p.name for p in (disk / "checkpoints").iterdir()) == \
            ["latest", "step_00000001"]
        assert ckpt.load_latest_intact(disk / "checkpoints").step == 1

        logger = MetricsLogger(str(disk), tensorboard=False, progress=False)
        logger.log(1, {"x": 1.0})
        fill(disk, 0)
        with pytest.raises(OSError, match=r"metrics\.jsonl: cannot append metrics"):
            logger.log(2, {"x": 2.0, "pad": "y" * 8192})
        (disk / "filler").unlink()
        assert read_metrics(str(disk / "metrics.jsonl")) == [{"step": 1, "kind": "train",
                                                               "x": 1.0}]


# ------------------------------------------------------------------ data

def _png(size, mode="RGB"):
    import io
    buf = io.BytesIO()
    Image.new(mode, size, 0).save(buf, format="PNG")
    return buf.getvalue()


def _jsonl(tmp_path, lines):
    """A JSONL file of ``lines``: dicts as JSON, bytes written as they are."""
    path = tmp_path / "data.jsonl"
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n")
    return path


def test_bad_rows_of_every_kind_are_skipped_and_counted(tmp_path):
    for name, size in (("ok", (56, 40)), ("wide", (3000, 8)), ("tall", (14, 2801)),
                       ("tiny", (4, 4)), ("huge", (300, 300)), ("edge", (2800, 14))):
        (tmp_path / f"{name}.png").write_bytes(_png(size))
    row = lambda img, q="q?": {"problem": q, "answer": "1", "images": [img]}  # noqa: E731
    path = _jsonl(tmp_path, [row("ok.png"), b'{"problem": "caf\xe9", "answer": "1"}',
                             row("wide.png"), row("tall.png"), row("tiny.png"),
                             row("huge.png"), row("edge.png")])
    limits = data_mod.ImageLimits(max_pixels=200 * 200)
    ds = data_mod.LocalFileDataset(path, shuffle=False, image_limits=limits)
    assert [e.image.size for e in ds] == [(56, 40), (2800, 14)]
    assert ds.skipped == {"invalid_utf8": 1, "image_too_small": 1, "image_too_large": 1,
                          "extreme_aspect_ratio": 2}
    # The default limits are the processor's: aspect 200 passes it, just above fails it.
    from pgpo_torch.tiny import build_tiny_processor
    proc = build_tiny_processor().image_processor
    default = data_mod.ImageLimits()
    assert default.max_pixels == Image.MAX_IMAGE_PIXELS
    assert default.reason(2800, 14) is None
    proc(images=[Image.new("RGB", (2800, 14))], return_tensors="pt")
    assert default.reason(2815, 14) == "extreme_aspect_ratio"
    with pytest.raises(ValueError, match="aspect ratio"):
        proc(images=[Image.new("RGB", (2815, 14))], return_tensors="pt")


# ------------------------------------------------------------------ preflight

@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model would be built: preflight must stop the run before."""
    monkeypatch.setattr(trainer_mod, "build_policy", no_model_built)


def _trainer(tmp_path, *extra, out=None):
    cfg = load_config(tiny_args(out or tmp_path / "run", "train.total_steps=1", *extra))
    return trainer_mod.Trainer(cfg, DistEnv())


def test_preflight_output_dir_problems(tmp_path, no_model):
    (tmp_path / "file").write_text("x")
    with pytest.raises(preflight.PreflightError, match=r"^train\.output_dir: .*file is a file"):
        _trainer(tmp_path, out=tmp_path / "file")
    with small_tmpfs(tmp_path / "ro", 64, read_only=True) as ro:
        with pytest.raises(preflight.PreflightError,
                           match=r"^train\.output_dir: cannot (create|write in) .*ro"):
            _trainer(tmp_path, out=ro / "run")


def test_preflight_free_disk_for_one_checkpoint(tmp_path, no_model, monkeypatch):
    free = preflight.TINY_CHECKPOINT_BYTES - 1
    monkeypatch.setattr(preflight.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**12, 10**12 - free, free))
    with pytest.raises(preflight.PreflightError,
                       match=r"^train\.output_dir: .* has 8 MiB free, one checkpoint needs "
                             r"about 8 MiB \(estimated from the tiny model\)"):
        _trainer(tmp_path)


def test_preflight_model_folder(tmp_path, no_model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(preflight.PreflightError,
                       match=r"^model\.path: .*empty lacks weights .*; config\.json; "
                             r"an image processor .*; a tokenizer"):
        _trainer(tmp_path, f"model.path={tmp_path / 'empty'}")


def test_preflight_data_problems(tmp_path, no_model):
    (tmp_path / "data.csv").write_text("problem,answer\n")
    with pytest.raises(preflight.PreflightError,
                       match=r"^data\.source: cannot read .*data\.csv.*no \.jsonl/"):
        _trainer(tmp_path, f"data.source={tmp_path / 'data.csv'}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(preflight.PreflightError,
                       match=r"^data\.source: no usable training rows in .*empty\.jsonl"):
        _trainer(tmp_path, f"data.source={empty}")
    bad = _jsonl(tmp_path, [{"problem": "q", "answer": ""}, b"\xff"])
    with pytest.raises(preflight.PreflightError,
                       match=r"^data\.source: no usable training rows .*'invalid_utf8': 1, "
                             r"'empty_answer': 1"):
        _trainer(tmp_path, f"data.source={bad}")


# ------------------------------------------------------------------ end to end

FAULT_ARGS = ("model.sft_warmup_steps=2", "train.total_steps=3", "checkpoint.every=1",
              "eval.at_start=true", "algo.dynamic_sampling=false", "logging.plot=false")
KILL_POINTS = ("warmup_save", "first_rl_step", "step2_renamed", "metrics_step3", "report")


@pytest.mark.slow
def test_killed_at_every_save_point_then_resumed_equals_an_uninterrupted_run(
        tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    main(tiny_args(straight, *FAULT_ARGS))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for point in KILL_POINTS:  # each attempt resumes what the previous kill left
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "_fault_driver.py"), point,
             *tiny_args(killed, *FAULT_ARGS, "checkpoint.resume=auto")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 137, (point, proc.stdout[-3000:] + proc.stderr[-3000:])
    assert not (killed / "samples.html").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = main(tiny_args(killed, *FAULT_ARGS, "checkpoint.resume=auto"))
    assert summary["steps"] == 3 and summary["eval_final"]["responses"] == 2.0
    assert (killed / "samples.html").exists()  # the killed report, written again

    a = ckpt.load_checkpoint(straight / "checkpoints")
    b = ckpt.load_checkpoint(killed / "checkpoints")
    assert a.step == b.step == 3
    assert same_weights(a.model_state, b.model_state)
    assert a.data_state == b.data_state
    rows = comparable_metrics(killed)
    assert rows == comparable_metrics(straight)
    kinds = [(r["step"], r["kind"], r.get("phase", r.get("sft_step"))) for r in rows]
    assert kinds == [(0, "eval", "untrained"), (0, "sft", 1), (0, "sft", 2),
                     (0, "eval", "warmed_up"), (1, "train", None), (2, "train", None),
                     (3, "train", None), (3, "eval", "final")]
    # Resuming the finished run once more appends nothing.
    before = (killed / "metrics.jsonl").read_bytes()
    again = main(tiny_args(killed, *FAULT_ARGS, "checkpoint.resume=auto"))
    assert again["eval_final"] == summary["eval_final"]
    assert (killed / "metrics.jsonl").read_bytes() == before


@pytest.mark.slow
def test_sigterm_during_the_warmup_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(REPO, "reference_impl", "train.py"),
           *tiny_args(out, "model.sft_warmup_steps=500", "train.total_steps=2")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if metrics.exists() and '"kind": "sft"' in metrics.read_text():
                break
            if proc.poll() is not None:
                pytest.fail(f"trainer exited early:\n{proc.stdout.read()}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert json.loads((out / "summary.json").read_text())["stopped_by_signal"] is True
    saved = ckpt.load_checkpoint(out / "checkpoints")
    assert saved.step == 0 and saved.extra["warmup_done"] is False
    assert saved.extra["warmup_step"] >= 1  # steps done, resumed from the next one
    assert saved.data_state["cursor"] > 0  # the warm-up had consumed examples


@pytest.mark.slow
def test_sigterm_during_the_report_still_writes_the_summary(tmp_path, monkeypatch):
    reported = []

    def report(self, path):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the report is written
        reported.append(path)

    monkeypatch.setattr(trainer_mod.Trainer, "_report", report)
    out = tmp_path / "run"
    summary = main(tiny_args(out, "train.total_steps=1"))
    assert reported and summary["steps"] == 1
    assert json.loads((out / "summary.json").read_text())["steps"] == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.slow
def test_diverged_weights_never_reach_a_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    assert cli(tiny_args(out, "train.total_steps=2", "optim.lr=1e30", "checkpoint.every=1",
                         "algo.dynamic_sampling=false")) == 1
    err = capsys.readouterr().err
    assert "error: step 1: the weights are not finite" in err and "optim.lr" in err
    assert ckpt.list_checkpoints(out / "checkpoints") == []


@pytest.mark.slow
def test_a_skipped_nonfinite_update_is_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    real = rl_step_mod.response_logprobs

    def nan_when_training(model, batch, **kw):
        logp, ent = real(model, batch, **kw)
        return (logp * float("nan") if torch.is_grad_enabled() else logp), ent

    monkeypatch.setattr(rl_step_mod, "response_logprobs", nan_when_training)
    main(tiny_args(tmp_path / "run", "train.total_steps=1", "algo.dynamic_sampling=false",
                   "optim.max_nonfinite_steps=5"))
    out = capsys.readouterr().out
    assert "step 1: skipped an update with a NaN/inf loss or gradient (2 in a row" in out


def test_tiny_checkpoint_fits_the_preflight_estimate(tmp_path):
    cfg = load_config(tiny_args(tmp_path / "run", "train.total_steps=1"))
    model, _ = policy_model.build_policy(cfg, torch.device("cpu"))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    # weights + two AdamW moments + small states
    assert 3 * params + 2**20 < preflight.TINY_CHECKPOINT_BYTES


@pytest.mark.slow
def test_the_model_is_freed_before_the_process_group_is_destroyed(tmp_path, monkeypatch):
    """A DDP model keeps the gloo process group alive; freed only at interpreter exit,
    gloo can abort the process after a good run. main() drops it before shutdown()."""
    import weakref

    from reference_impl.policy import distributed

    refs, seen = [], []
    real_fit = trainer_mod.Trainer.fit

    def fit(self):
        refs.append(weakref.ref(self.model))
        return real_fit(self)

    monkeypatch.setattr(trainer_mod.Trainer, "fit", fit)
    monkeypatch.setattr(distributed, "shutdown",
                        lambda **kw: seen.append((refs[0]() is None, kw)))
    main(tiny_args(tmp_path / "run", "train.total_steps=1"))
    assert seen == [(True, {"synchronize": True})]


@pytest.mark.slow
def test_a_step_that_fails_on_diverged_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"^step \d: the weights are not finite .*"
                                                 r"probability tensor.*the last good checkpoint "
                                                 r"is none.*optim\.lr"):
        main(tiny_args(out, "train.total_steps=3", "optim.lr=1e30",
                       "algo.dynamic_sampling=false"))
    assert ckpt.list_checkpoints(out / "checkpoints") == []
