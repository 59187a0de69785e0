"""Fault injection (issue 18): chains of stops and kills at the phase boundaries resume to
exactly an uninterrupted run's logs and summary; bad rows stay rows; faults a user can
fix end with one line and the documented exit status, never a traceback. Each test is
on the small configuration and takes a few seconds."""

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import comparable_metrics, tiny_args, varied_rewards  # noqa: E402

from reference_impl.runlog import checkpoint as ckpt  # noqa: E402
from reference_impl.runlog import metrics as logging_utils  # noqa: E402
from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.train import main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Wall times (timing_s/* keys, and the rows of kind "timing" that hold a save's) differ
# between identical runs: left out of every comparison.
# Warm-up, evaluations before and after it, a periodic evaluation at step 3, four RL steps,
# a checkpoint every step, TensorBoard on.
CHAIN_ARGS = ("model.sft_warmup_steps=2", "train.total_steps=4", "checkpoint.every=1",
              "eval.at_start=true", "eval.every=3", "algo.dynamic_sampling=false",
              "logging.plot=false", "logging.tensorboard=true")
SUMMARY_KEYS = ("steps", "stopped_by_signal", "eval_untrained", "eval_warmed_up",
                "eval_final", "rl_gain", "dependency_on_perception_tokens")


def tensorboard_points(out):
    """``{(run, tag): [(step, value), ...]}`` as TensorBoard shows them (purged points
    hidden), timings left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = {}
    root = os.path.join(out, "tensorboard")
    for run in ("", "eval", "warmup", "warmup_eval"):
        if not os.path.isdir(os.path.join(root, run)):
            continue
        acc = EventAccumulator(os.path.join(root, run))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if "timing_s/" not in tag:
                points[run, tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    return points


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def stop_in_eval(monkeypatch, when):
    """SIGTERM at the start of the evaluation for which ``when(trainer)`` holds (the
    evaluation is then abandoned at its first stop check)."""
    real = trainer_mod.Trainer.evaluate

    def evaluate(self, **kw):
        if when(self):
            sigterm()
        return real(self, **kw)
    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", evaluate)


def stop_after_row(monkeypatch, when):
    """SIGTERM right after a metrics row for which ``when(step, kind, metrics)`` holds."""
    real = logging_utils.MetricsLogger.log

    def log(self, step, metrics, *, kind="train"):
        real(self, step, metrics, kind=kind)
        if when(step, kind, metrics):
            sigterm()
    monkeypatch.setattr(logging_utils.MetricsLogger, "log", log)


def kill_after_line(out, text):
    """A subprocess run resumed in ``out``, killed (``os._exit(137)``) right after it
    prints a line starting with ``text``."""
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_fault_driver.py"), f"after_line:{text}",
         *tiny_args(out, *CHAIN_ARGS, "checkpoint.resume=auto")],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
        text=True, timeout=180)
    assert proc.returncode == 137, proc.stdout[-3000:] + proc.stderr[-3000:]


def resume(out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return main(tiny_args(out, *CHAIN_ARGS, "checkpoint.resume=auto"))


# ------------------------------------------------------------------ every row once

@pytest.mark.slow
def test_a_chain_of_stops_and_kills_at_every_phase_boundary_equals_an_uninterrupted_run(
        tmp_path, monkeypatch, one_thread):
    """Stopped (SIGTERM) in each phase in turn, resumed each time, and killed after the
    periodic evaluation that a stop had left pending was logged again: metrics.jsonl,
    TensorBoard and summary.json end as an uninterrupted run's (before issue 18 the
    step-3 evaluation was logged twice, and the summary lost the RL gain)."""
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    straight, chain = tmp_path / "straight", tmp_path / "chain"
    expected = main(tiny_args(straight, *CHAIN_ARGS))
    assert {"eval_untrained", "eval_warmed_up", "rl_gain"} <= set(expected)
    total = 4
    stops = [  # (what, patch); each attempt resumes what the previous one left
        ("untrained eval", lambda m: stop_in_eval(m, lambda t: not t.run.warmup_done
                                                  and t.run.warmup_step == 0)),
        ("warm-up step 1", lambda m: stop_after_row(m, lambda s, k, r: k == "sft"
                                                    and r["sft_step"] == 1)),
        ("warmed-up eval", lambda m: stop_in_eval(m, lambda t: t.run.warmup_done and t.run.step == 0)),
        ("RL step 2", lambda m: stop_after_row(m, lambda s, k, r: k == "train" and s == 2)),
        ("periodic eval at step 3", lambda m: stop_in_eval(m, lambda t: t.run.step == 3)),
    ]
    for what, patch in stops:
        with monkeypatch.context() as m:
            patch(m)
            summary = resume(chain)
        assert summary["stopped_by_signal"] is True, what
    saved = ckpt.load_checkpoint(chain / "checkpoints")
    assert saved.step == 3 and saved.extra["eval_pending"] is True
    kill_after_line(chain, "eval @ step 3")  # the pending evaluation, logged, then killed
    with monkeypatch.context() as m:
        stop_in_eval(m, lambda t: t.run.step == total)
        assert resume(chain)["stopped_by_signal"] is True  # stopped in the final eval
    summary = resume(chain)

    rows = comparable_metrics(chain)
    assert rows == comparable_metrics(straight)
    kinds = [(r["step"], r["kind"], r.get("phase", r.get("sft_step"))) for r in rows]
    assert kinds == [(0, "eval", "untrained"), (0, "sft", 1), (0, "sft", 2),
                     (0, "eval", "warmed_up"), (1, "train", None), (2, "train", None),
                     (3, "train", None), (3, "eval", None), (4, "train", None),
                     (4, "eval", "final")]
    assert tensorboard_points(chain) == tensorboard_points(straight)
    assert tensorboard_points(chain)["eval", "eval/reward"] == \
        [(3, rows[7]["reward"]), (4, rows[9]["reward"])]
    assert summary["resumed_from"] == total
    assert {k: summary.get(k) for k in SUMMARY_KEYS} == {k: expected.get(k) for k in SUMMARY_KEYS}
    on_disk = json.loads((chain / "summary.json").read_text())
    assert on_disk["rl_gain"] == expected["rl_gain"]
    # Resuming the finished run once more appends nothing and keeps the whole summary.
    before = (chain / "metrics.jsonl").read_bytes()
    again = resume(chain)
    assert {k: again.get(k) for k in SUMMARY_KEYS} == {k: expected.get(k) for k in SUMMARY_KEYS}
    assert (chain / "metrics.jsonl").read_bytes() == before


@pytest.mark.slow
def test_resuming_a_finished_run_keeps_its_summary_without_evaluating_again(
        tmp_path, monkeypatch):
    """A finished run resumed: its summary.json and report are kept and no evaluation
    runs (at scale the final evaluation is long); with the report's samples.html gone
    (a kill during the report), the final evaluation runs once to rewrite it and the
    summary is still the finished run's."""
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    args = ("model.sft_warmup_steps=2", "train.total_steps=2", "eval.at_start=true",
            "algo.dynamic_sampling=false", "logging.plot=false")
    expected = main(tiny_args(out, *args))
    assert "rl_gain" in expected and (out / "samples.html").exists()
    metrics = (out / "metrics.jsonl").read_bytes()
    calls = []
    real = trainer_mod.Trainer.evaluate
    monkeypatch.setattr(trainer_mod.Trainer, "evaluate",
                        lambda self, **kw: calls.append(1) or real(self, **kw))
    again = main(tiny_args(out, *args, "checkpoint.resume=auto"))
    assert calls == []
    assert {k: again.get(k) for k in SUMMARY_KEYS} == {k: expected.get(k) for k in SUMMARY_KEYS}
    assert again["resumed_from"] == 2
    (out / "samples.html").unlink()
    again = main(tiny_args(out, *args, "checkpoint.resume=auto"))
    assert calls == [1] and (out / "samples.html").exists()
    assert {k: again.get(k) for k in SUMMARY_KEYS} == {k: expected.get(k) for k in SUMMARY_KEYS}
    assert (out / "metrics.jsonl").read_bytes() == metrics


def test_a_resumed_runs_tensorboard_file_is_read_after_the_attempt_before_it(tmp_path):
    """TensorBoard reads events files in name order, with the creation second first in the
    name: a resume in the same second as the attempt before it (whose file may sort
    after it by process id) must still be read last, or the old attempt's points show."""
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = logging_utils.MetricsLogger(str(tmp_path), progress=False)
    for s in (1, 2, 3, 4):
        first.log(s, {"reward": float(s)})
    first.close()
    folder = tmp_path / "tensorboard"
    (old,) = [p for p in folder.iterdir() if p.is_file()]
    # The earlier attempt's file, as a process with a higher id would have named it in
    # this very second (or the next one).
    old.rename(folder / f"events.out.tfevents.{int(time.time()) + 1}.host.999999.0")
    again = logging_utils.MetricsLogger(str(tmp_path), progress=False, purge_step=3)
    for s in (3, 4):
        again.log(s, {"reward": 10.0 * s})
    again.close()
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/reward")] == \
        [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


# ------------------------------------------------------------------ bad rows stay rows

def _png(size=(56, 40)):
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_every_way_a_row_stores_its_image_is_decoded_per_row(tmp_path, caplog):
    """Image bytes as base64 text (how many JSONL exports store them), a data URI or a
    list of ints are accepted; bytes that are none of these, a NUL in a path, a UTF-8 BOM
    at the file's start: each costs at most its own row, counted with its line."""
    import base64
    import logging

    from reference_impl.data import sources as data_mod

    png = _png()
    b64 = base64.b64encode(png).decode()
    row = lambda img: {"problem": "q?", "answer": "1", "images": [img]}  # noqa: E731
    lines = [row({"bytes": b64}),                                    # line 1 (after the BOM)
             row({"bytes": -1}),                                     # 2: not bytes at all
             row({"bytes": "not base64 !"}),                         # 3
             row({"bytes": list(png)}),                              # 4: list of ints
             row({"bytes": [1, 300]}),                               # 5: not a byte
             {"problem": "q?", "answer": "1", "image": f"data:image/png;base64,{b64}"},  # 6
             row("a\0b.png"),                                        # 7: NUL in a path
             row({"bytes": base64.b64encode(b"not an image").decode()}),  # 8
             {"problem": {"weird": 1}, "answer": "1", "image": b64}]  # 9: no question
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    with caplog.at_level(logging.WARNING, logger=data_mod.__name__):
        ds = data_mod.LocalFileDataset(path, shuffle=False)
    assert [e.id for e in ds] == ["data.jsonl:0", "data.jsonl:3", "data.jsonl:5"]
    assert all(e.image.size == (56, 40) and e.image.getpixel((0, 0)) == (200, 10, 10)
               for e in ds)
    assert ds.skipped == {"missing_question": 1, "missing_image": 1, "corrupt_image": 4}
    assert ds.skipped_rows == {"missing_question": ["data.jsonl:line 9"],
                               "missing_image": ["data.jsonl:line 7"],
                               "corrupt_image": ["data.jsonl:line 2", "data.jsonl:line 3",
                                                 "data.jsonl:line 5", "data.jsonl:line 8"]}
    assert "skipped 6 of 9 rows" in caplog.text and "corrupt_image: data.jsonl:line 2" in caplog.text


def test_a_row_that_breaks_the_reader_is_skipped_and_counted(tmp_path, monkeypatch):
    from reference_impl.data import sources as data_mod

    (tmp_path / "a.png").write_bytes(_png())
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"problem": q, "answer": "1", "image": "a.png"}) + "\n"
                            for q in ("ok", "boom", "ok too")))
    real = data_mod.strip_image_placeholders

    def fragile(question):
        if question == "boom":
            raise TypeError("something no one foresaw")
        return real(question)
    monkeypatch.setattr(data_mod, "strip_image_placeholders", fragile)
    ds = data_mod.LocalFileDataset(path, shuffle=False)
    assert [e.question for e in ds] == ["ok", "ok too"]
    assert ds.skipped == {"unreadable_row": 1}
    assert ds.skipped_rows == {"unreadable_row": ["data.jsonl:line 2"]}


# ------------------------------------------------------------------ one line, never a traceback

def one_error_line(capfd):
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Exception in thread" not in err, out + err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["metrics", "tensorboard", "report"])
def test_a_full_disk_during_any_write_ends_in_one_line(tmp_path, monkeypatch, capfd, when):
    """The disk fills up after step 1's metrics row (the next row cannot be appended), or
    after the final evaluation's row (TensorBoard's writer thread fails when the run
    flushes it), or as the report starts (the plot and samples.html cannot be written)."""
    from test_faults import fill, small_tmpfs

    from reference_impl.train import cli

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    with small_tmpfs(tmp_path / "small", 12 * 1024) as disk:
        def full():
            fill(disk, 0)
            if when == "tensorboard":  # its small writes may fit the pages already held
                from tensorboard.summary.writer import record_writer

                def write(self, *data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                monkeypatch.setattr(record_writer.RecordWriter, "write", write)
                monkeypatch.setattr(record_writer.RecordWriter, "flush", write)
        if when == "report":
            real_report = trainer_mod.Trainer._report
            monkeypatch.setattr(trainer_mod.Trainer, "_report",
                                lambda self, path: (full(), real_report(self, path)))
        else:
            real_log = logging_utils.MetricsLogger.log

            def log(self, step, metrics, *, kind="train"):
                if when == "metrics" and kind == "train" and step == 2:
                    full()  # step 1's checkpoint is saved; step 2's row cannot be
                    metrics = {**metrics, "pad": "y" * 8192}  # more than a page
                real_log(self, step, metrics, kind=kind)
                if when == "tensorboard" and metrics.get("phase") == "final":
                    full()
            monkeypatch.setattr(logging_utils.MetricsLogger, "log", log)
        rc = cli(tiny_args(disk / "run", "train.total_steps=2", "algo.dynamic_sampling=false",
                           "logging.tensorboard=true", "logging.plot=true",
                           "checkpoint.every=1"))
        line = one_error_line(capfd)
        assert rc == 1
        assert line.startswith("error: no space left on the device: ") and \
            "checkpoint.resume=auto" in line
        assert {"metrics": "metrics.jsonl: cannot append metrics", "report": "cannot write the report",
                "tensorboard": "cannot write TensorBoard events"}[when] in line, line
        assert ckpt.load_latest_intact(disk / "run" / "checkpoints").step == \
            (1 if when == "metrics" else 2)


@pytest.mark.parametrize("args,rc,text", [
    (["rollout.tis_cap=0.5"], 2, "error: rollout.tis_cap: truncated importance sampling needs "
                                 "an engine that reports its log-probs (rollout.backend=vllm)"),
    (["model.path=/nonexistent", "model.sft_warmup_steps=5"], 2,
     "error: model.path: no such file or directory: '/nonexistent'"),
])
def test_a_bad_setup_is_one_line_with_exit_status_2(tmp_path, capfd, monkeypatch, args, rc, text):
    from reference_impl.train import cli

    monkeypatch.setattr(trainer_mod, "build_policy", lambda *a, **k: pytest.fail("model built"))
    with pytest.raises(SystemExit) if args[0].startswith("model.path") else \
            contextlib.nullcontext() as exit_info:
        got = cli(tiny_args(tmp_path / "run", "train.total_steps=1", *args))
    assert (exit_info.value.code if exit_info else got) == rc
    assert one_error_line(capfd) .startswith(text)


@pytest.mark.parametrize("content,text", [
    (b"\xff\xfe\x00t\x00r\n", "is not UTF-8 text (byte 0: invalid start byte); save it as UTF-8"),
    (b"train:\n  total_steps: 3\n optim:\n  lr: 1e-4\n",
     "is not valid YAML: while parsing a block mapping: expected <block end>, but found "
     "'<block mapping start>' (line 3, column 2)"),
], ids=["not_utf8", "broken_yaml"])
def test_a_config_file_that_cannot_be_parsed_is_one_line_with_exit_status_2(
        tmp_path, capfd, monkeypatch, content, text):
    """A --config file saved as UTF-16 (a traceback before issue 18's second campaign), or
    one whose YAML is broken (PyYAML's message spans several lines): one line naming the file
    and where it is wrong, exit status 2, before any model is built."""
    from reference_impl.train import main

    monkeypatch.setattr(trainer_mod, "build_policy", lambda *a, **k: pytest.fail("model built"))
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(path), *tiny_args(tmp_path / "run", "train.total_steps=1")])
    assert exit_info.value.code == 2
    line = one_error_line(capfd)
    assert line == f"error: --config: {str(path)!r} {text}", line
    assert capfd.readouterr() == ("", "")


def test_nccl_on_a_machine_without_cuda_names_dist_backend(tmp_path, capfd, monkeypatch):
    import torch

    from reference_impl.train import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:  # train.device=auto: runs on the CPU
        main(tiny_args(tmp_path / "run", "train.total_steps=1", "train.device=auto",
                       "dist.backend=nccl"))
    assert exit_info.value.code == 2
    assert one_error_line(capfd).startswith("error: dist.backend: nccl needs CUDA, and torch "
                                            "sees no GPU here")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_exits_0_in_one_line(tmp_path, capfd, monkeypatch, signum):
    """Sent while the configuration is read (before main's own handler exists)."""
    from reference_impl import config as config_mod
    from reference_impl.train import cli

    real = config_mod.load_config

    def load_config(*a, **k):
        os.kill(os.getpid(), signum)
        return real(*a, **k)
    monkeypatch.setattr(config_mod, "load_config", load_config)
    monkeypatch.setattr(trainer_mod, "build_policy", lambda *a, **k: pytest.fail("model built"))
    out = tmp_path / "run"
    assert cli(tiny_args(out, "train.total_steps=1")) == 0
    text, err = capfd.readouterr()
    assert "Traceback" not in text + err
    assert text.strip() == (f"stop signal ({signal.Signals(signum).name}) during start-up: "
                            "nothing trained or saved yet; exiting")
    assert not (out / "summary.json").exists() and not (out / "checkpoints").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_sigterm_in_the_first_second_of_the_command_exits_0(tmp_path):
    """The real command, signalled as soon as its handler exists (it then imports torch)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "reference_impl", "train.py"),
                             *tiny_args(out, "train.total_steps=1")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bit = 1 << (signal.SIGTERM - 1)
    try:
        for _ in range(2000):  # the SigCgt mask shows when SIGTERM is caught
            with open(f"/proc/{proc.pid}/status") as f:
                caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt"))
            if caught & bit:
                break
            import time
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert "during start-up: nothing trained or saved yet" in stdout


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_interpreter_exits_keeps_exit_status_0(tmp_path, signum):
    """The run is over (summary written) and Python tears itself down, which resets every
    Python-level signal handler to the default action: a stop signal then (one that the
    campaign of issue 18 sent as a resumed finished run exited) ended the process with
    status 130/143. Sent here by an object that the interpreter frees after that reset."""
    driver = tmp_path / "late_signal.py"
    driver.write_text(
        "import os, runpy, signal, sys\n"
        "class Late:  # freed with __main__'s globals, after the handlers were reset\n"
        f"    def __del__(self, kill=os.kill, pid=os.getpid(), sig={int(signum)}):\n"
        "        kill(pid, sig)\n"
        "late = Late()\n"
        f"sys.argv = [{os.path.join(REPO, 'reference_impl', 'train.py')!r}, '--help']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    proc = subprocess.run([sys.executable, str(driver)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "--train.total_steps" in proc.stdout


# ------------------------------------------------------------------ checkpoints of another setup

@pytest.mark.slow
def test_a_checkpoint_of_another_setup_is_skipped_or_refused_before_the_model(
        tmp_path, monkeypatch, capfd):
    """A LoRA checkpoint as the newest in place of a full one: ``auto`` falls back to the
    intact full one with a warning; named by path, it is refused with what differs,
    before any model is built; one that predates the setup record still gets one line."""
    import shutil

    from reference_impl.loop import preflight
    from reference_impl.config import load_config
    from reference_impl.train import cli

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    full, lora = tmp_path / "full", tmp_path / "lora"
    args = ("algo.dynamic_sampling=false", "checkpoint.every=1", "logging.plot=false")
    main(tiny_args(full, "train.total_steps=1", *args))
    main(tiny_args(lora, "train.total_steps=2", "lora.enabled=true", "lora.r=2", *args))
    shutil.copytree(lora / "checkpoints" / "step_00000002", full / "checkpoints" / "step_00000002")
    (full / "checkpoints" / "latest").write_text("step_00000002\n")
    foreign = full / "checkpoints" / "step_00000002"

    monkeypatch.setattr(trainer_mod, "build_policy", lambda *a, **k: pytest.fail("model built"))
    capfd.readouterr()
    assert cli(tiny_args(full, "train.total_steps=2", f"checkpoint.resume={foreign}", *args)) == 1
    line = one_error_line(capfd)
    assert line.startswith(f"error: checkpoint.resume={foreign}: saved with another setup "
                           "(lora: saved {'r': 2, 'target_modules':"), line
    assert "this run None" in line
    cfg = load_config(tiny_args(full, "checkpoint.resume=auto"))
    with pytest.raises(ckpt.CheckpointError, match=r"no intact checkpoint .*processes: saved 1, "
                                                   r"this run 2"):
        preflight.check_resume(cfg, world_size=2)  # a one-process run resumed by two
    monkeypatch.undo()
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)

    with pytest.warns(RuntimeWarning, match=r"step_00000002: saved with another setup \(lora"):
        summary = main(tiny_args(full, "train.total_steps=2", "checkpoint.resume=auto", *args))
    assert summary["resumed_from"] == 1 and summary["steps"] == 2

    # A LoRA checkpoint from before the setup was recorded: one line, no traceback.
    old = lora / "checkpoints" / "step_00000002"
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["setup"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    capfd.readouterr()
    assert cli(tiny_args(tmp_path / "other", "train.total_steps=3",
                         f"checkpoint.resume={old}", *args)) == 1
    assert "does not fit this run's model setup" in one_error_line(capfd)


@pytest.mark.slow
def test_a_checkpoint_without_its_run_state_is_named_as_such(tmp_path, monkeypatch, capfd):
    """A hand-made checkpoint whose manifest matches the run but whose extra.pt lacks the
    step: one line saying the run state is unreadable (the campaign's wording nit: it was
    blamed on the model setup)."""
    from reference_impl.train import cli

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    run = tmp_path / "run"
    args = ("algo.dynamic_sampling=false", "checkpoint.every=1", "logging.plot=false")
    main(tiny_args(run, "train.total_steps=1", *args))
    saved = ckpt.load_checkpoint(run / "checkpoints")
    setup = json.loads((saved.path / "manifest.json").read_text())["setup"]
    extra = {k: v for k, v in saved.extra.items() if k != "step"}
    made = ckpt.save_checkpoint(tmp_path / "made", 1, model_state=saved.model_state,
                                optimizer_state=saved.optimizer_state,
                                scheduler_state=saved.scheduler_state,
                                rng_state=saved.rng_state, data_state=saved.data_state,
                                extra=extra, setup=setup)
    capfd.readouterr()
    assert cli(tiny_args(tmp_path / "other", "train.total_steps=2",
                         f"checkpoint.resume={made}", *args)) == 1
    line = one_error_line(capfd)
    assert line == (f"error: checkpoint.resume={made}: {made} has no readable run state "
                    "(extra.pt): KeyError 'step'"), line


# ------------------------------------------------------------------ the latest pointer

@pytest.mark.parametrize("broken", ["missing", "not_utf8", "names_gone", "names_damaged"])
def test_a_broken_latest_pointer_is_repaired(tmp_path, broken):
    import torch

    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, model_state={"w": torch.full((2,), float(step))})
    latest = tmp_path / "latest"
    if broken == "missing":
        latest.unlink()
    elif broken == "not_utf8":
        latest.write_bytes(b"\xff\xfe")
    elif broken == "names_gone":
        latest.write_text("step_00000009\n")
    else:
        (tmp_path / "step_00000003" / "model.pt").write_bytes(b"short")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = ckpt.load_latest_intact(tmp_path)
    expected = "step_00000002" if broken == "names_damaged" else "step_00000003"
    assert found.path.name == expected
    message = ckpt.repair_latest(tmp_path, found.path)
    assert message.startswith(f"{latest} was broken (") and message.endswith(
        f"repaired: it now names {expected}, the checkpoint resumed from")
    assert latest.read_text() == expected + "\n"
    assert ckpt.repair_latest(tmp_path, found.path) is None  # sound now


def test_a_latest_pointer_that_is_a_directory_is_one_line(tmp_path):
    """``checkpoints/latest`` made a folder (by hand, a sync tool, a bad copy): the resume
    that repairs the pointer, and a save that moves it, used to end in a raw
    IsADirectoryError from ``os.replace``; now a CheckpointError (one line, exit status
    1) naming it, and no temporary file is left behind."""
    import torch

    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, model_state={"w": torch.full((2,), float(step))})
    latest = tmp_path / "latest"
    latest.unlink()
    latest.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = ckpt.load_latest_intact(tmp_path)
    assert found.step == 2
    text = rf"^{re.escape(str(latest))}: is a directory, where a file is written; remove or rename it"
    with pytest.raises(ckpt.CheckpointError, match=text):
        ckpt.repair_latest(tmp_path, found.path)
    with pytest.raises(ckpt.CheckpointError, match=text):
        ckpt.save_checkpoint(tmp_path, 3, model_state={"w": torch.full((2,), 3.0)})
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["latest", "step_00000001", "step_00000002", "step_00000003"]


@pytest.mark.parametrize("err,text", [
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/run/metrics.jsonl"),
     "error: /run/metrics.jsonl: Is a directory; "),
    (OSError(errno.EISDIR, "/run/samples.html: cannot write the report (Is a directory)"),
     "error: [Errno 21] /run/samples.html: cannot write the report (Is a directory); "),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/run/tensorboard/eval"),
     "error: /run/tensorboard/eval: Not a directory; "),
    (PermissionError(errno.EACCES, "Permission denied", "/run/metrics.jsonl"),
     "error: /run/metrics.jsonl: Permission denied; "),
    (OSError(errno.EROFS, "Read-only file system", "/run/checkpoints/.tmp-step"),
     "error: /run/checkpoints/.tmp-step: Read-only file system; "),
], ids=["metrics_is_a_folder", "report_over_a_folder", "not_a_folder", "forbidden", "read_only"])
def test_a_path_the_file_system_refuses_ends_in_one_line(capfd, monkeypatch, err, text):
    """A run's own file that the file system refuses mid-run (found by issue 18's second
    campaign: metrics.jsonl or samples.html made a folder ended in a raw traceback): one
    line naming the path, exit status 1; other OSErrors still propagate."""
    import reference_impl.train as train_mod

    def main(argv, **_):
        raise err
    monkeypatch.setattr(train_mod, "main", main)
    assert train_mod.cli([]) == 1
    line = one_error_line(capfd)
    assert line.startswith(text) and line.endswith("then resume with checkpoint.resume=auto"), line
    monkeypatch.setattr(train_mod, "main", lambda argv, **_: open("/nonexistent/x"))
    with pytest.raises(FileNotFoundError):
        train_mod.cli([])


@pytest.mark.slow
def test_the_trainer_repairs_a_broken_latest_pointer_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    args = ("train.total_steps=1", "algo.dynamic_sampling=false", "checkpoint.every=1",
            "logging.plot=false")
    main(tiny_args(out, *args))
    (out / "checkpoints" / "latest").write_text("garbage")
    with pytest.warns(RuntimeWarning, match=r"latest was broken \(unreadable\); repaired: it "
                                            r"now names step_00000001"):
        main(tiny_args(out, *args, "checkpoint.resume=auto"))
    assert (out / "checkpoints" / "latest").read_text() == "step_00000001\n"


# ------------------------------------------------------------------ a peer process dies

@pytest.mark.slow
def test_a_rank_that_dies_under_torchrun_is_named_with_how_to_resume(tmp_path):
    """Rank 1 of two gloo processes is killed as step 2 starts: rank 0 ends with one line
    naming rank 1, the last checkpoint and checkpoint.resume=auto, no traceback of its
    own (torchrun's report of the failed child follows, as torchrun prints it)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0",
           os.path.join(HERE, "_fault_driver.py"), "rank1_step2",
           *tiny_args(out, "train.total_steps=3", "checkpoint.every=1",
                      "algo.dynamic_sampling=false", "dist.backend=gloo", "train.device=cpu")]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output[-4000:]
    # gloo's own words for the lost peer depend on the moment it died (a closed or a reset
    # connection, with or without the peer's address); each is the peer's death.
    assert re.match(r"error: rank 0: rank 1 stopped answering \([^()]*Connection (closed|reset)"
                    r" by peer[^()]*\); ", lines[0]), lines[0]
    assert lines[0].endswith(f"training stopped, the last checkpoint is "
                             f"{out / 'checkpoints' / 'step_00000001'}. See that rank's own "
                             "output and torchrun's report for why it failed, then rerun the "
                             "same torchrun command with checkpoint.resume=auto"), lines[0]
    # The only traceback is torchrun's own (its ChildFailedError report), none from rank 0.
    assert output.count("Traceback") <= 1 and "gloo/transport" not in output.split("error:")[0]
    assert "exitcode  : 1" in output and "exitcode  : 137" in output
