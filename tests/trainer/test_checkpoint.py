"""reference_impl.runlog.checkpoint: atomic writes, crash safety, pruning, exact resume, SIGTERM."""

import json
import os
import random
import signal
import threading
import time

import numpy as np
import pytest
import torch

from reference_impl.runlog import checkpoint as ckpt
from reference_impl.runlog.checkpoint import (
    CheckpointError, find_latest, list_checkpoints, load_checkpoint, prune_checkpoints,
    save_checkpoint,
)
from reference_impl.runlog.files import atomic_write_text
from reference_impl.runlog.rng import capture_rng_state, restore_rng_state
from reference_impl.runlog.signals import GracefulExit


def tiny_state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}


def save(directory, step, **kw):
    return save_checkpoint(directory, step, model_state=tiny_state(step),
                           data_state={"position": step * 10}, **kw)


def steps_on_disk(directory):
    return [s for s, _ in list_checkpoints(directory)]


# ----------------------------------------------------------------- round trip

def test_save_load_round_trip_and_layout(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    path = save_checkpoint(tmp_path, 7, model_state=model.state_dict(),
                           optimizer_state=opt.state_dict(), scheduler_state=sched.state_dict(),
                           rng_state=capture_rng_state(), data_state={"epoch": 1, "position": 12},
                           extra={"config": {"rollout": {"top_p": 0.99}}})
    assert path == tmp_path / "step_00000007"
    assert (tmp_path / "latest").read_text() == "step_00000007\n"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["step"] == 7
    assert sorted(manifest["files"]) == ["data", "extra", "model", "optimizer", "rng", "scheduler"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    loaded = load_checkpoint(tmp_path)  # the parent directory resolves to the latest
    assert loaded.path == path and loaded.step == 7
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model_state[k], v)
    exp_avg = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(loaded.optimizer_state["state"][0]["exp_avg"], exp_avg)
    assert loaded.scheduler_state["last_epoch"] == 1
    assert loaded.data_state == {"epoch": 1, "position": 12}
    assert loaded.extra["config"]["rollout"]["top_p"] == 0.99


def test_states_left_out_load_as_none_and_resaving_a_step_replaces_it(tmp_path):
    save(tmp_path, 3)
    second = save_checkpoint(tmp_path, 3, model_state={"w": torch.zeros(2)})
    loaded = load_checkpoint(second)
    assert torch.equal(loaded.model_state["w"], torch.zeros(2))
    assert loaded.optimizer_state is None and loaded.data_state is None
    assert steps_on_disk(tmp_path) == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000003"]


def test_only_the_main_process_writes(tmp_path):
    assert save(tmp_path / "ckpt", 1, is_main_process=False) is None
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(step=-1), r"^step: expected an int >= 0"),
    (dict(step=True), r"^step: expected an int >= 0"),
    (dict(step=1, keep_last=0), r"^keep_last: expected an int >= 1"),
    (dict(step=1, model_state=None), r"^model_state, sharded_state: give exactly one"),
    (dict(step=1, sharded_state={"model": {}}), r"^model_state, sharded_state: give exactly one"),
])
def test_bad_arguments_are_rejected(tmp_path, kwargs, message):
    kwargs.setdefault("model_state", {"w": torch.ones(1)})
    with pytest.raises(ValueError, match=message):
        save_checkpoint(tmp_path, **kwargs)


def test_loading_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint under"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such checkpoint or directory"):
        load_checkpoint(tmp_path / "absent")
    assert find_latest(tmp_path) is None


# ------------------------------------------------------------ crash safety

def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save(tmp_path, 1)
    real_save = torch.save
    calls = []

    def dying_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the model file is written, the next one dies half-way
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 half a zip")
            raise OSError("No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, 2, model_state=tiny_state(2), optimizer_state={"x": 1},
                        data_state={"position": 20})
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert len(calls) == 2
    assert find_latest(tmp_path) == tmp_path / "step_00000001"
    assert steps_on_disk(tmp_path) == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 1 and loaded.data_state == {"position": 10}
    assert torch.equal(loaded.model_state["w"], tiny_state(1)["w"])


def test_leftovers_of_a_killed_writer_are_ignored_then_removed(tmp_path):
    save(tmp_path, 1)
    # What SIGKILL during the next save leaves: a hidden temp folder with a partial file.
    partial = tmp_path / ".tmp-step_00000002-abc123"
    partial.mkdir()
    (partial / "model.pt").write_bytes(b"PK\x03\x04 partial")
    # A step folder without a manifest (e.g. copied by hand, interrupted).
    (tmp_path / "step_00000003").mkdir()
    (tmp_path / "step_00000003" / "model.pt").write_bytes(b"junk")
    assert find_latest(tmp_path) == tmp_path / "step_00000001"  # via the latest pointer
    (tmp_path / "latest").unlink()                               # and by scanning
    with pytest.warns(RuntimeWarning, match=r"step_00000003: no manifest\.json"):
        assert find_latest(tmp_path) == tmp_path / "step_00000001"
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        load_checkpoint(tmp_path / "step_00000003")
    save(tmp_path, 4)
    assert not partial.exists()
    assert find_latest(tmp_path) == tmp_path / "step_00000004"


def test_a_truncated_file_is_detected(tmp_path):
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    model_file = newest / "model.pt"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=r"unusable checkpoint.*truncated"):
        assert find_latest(tmp_path) == tmp_path / "step_00000001"
    with pytest.raises(CheckpointError, match=r"model\.pt: \d+ bytes, manifest says \d+"):
        load_checkpoint(newest)
    with pytest.warns(RuntimeWarning):
        assert load_checkpoint(tmp_path).step == 1


def test_a_damaged_file_of_the_right_size_fails_the_checksum(tmp_path):
    path = save(tmp_path, 1)
    model_file = path / "model.pt"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.pt: SHA-256 differs"):
        load_checkpoint(path)
    assert find_latest(tmp_path) == path                # sizes only: cheap
    with pytest.raises(CheckpointError, match="SHA-256"):
        find_latest(path, checksums=True)


def test_atomic_write_text_keeps_the_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "latest"
    atomic_write_text(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(ckpt.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"


# ------------------------------------------------------------------- pruning

def test_keep_last_prunes_the_oldest(tmp_path):
    for step in range(1, 6):
        save(tmp_path, step, keep_last=2)
    assert steps_on_disk(tmp_path) == [4, 5]
    assert load_checkpoint(tmp_path).step == 5


def test_pruning_never_deletes_the_latest(tmp_path):
    save(tmp_path, 10)
    save(tmp_path, 3, keep_last=1)  # e.g. a rerun from an earlier step
    assert steps_on_disk(tmp_path) == [3, 10]
    assert find_latest(tmp_path) == tmp_path / "step_00000003"
    assert prune_checkpoints(tmp_path, keep_last=1) == []
    save(tmp_path, 11)
    assert prune_checkpoints(tmp_path, keep_last=1) == [tmp_path / "step_00000003",
                                                        tmp_path / "step_00000010"]
    with pytest.raises(ValueError, match=r"^keep_last: expected an int >= 1"):
        prune_checkpoints(tmp_path, keep_last=0)


# ------------------------------------------------------------------------ RNG

def draw_everything(n=5):
    return ([random.random() for _ in range(n)], np.random.normal(size=n).tolist(),
            torch.rand(n).tolist())


def test_rng_state_restores_python_numpy_and_torch(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in numpy's legacy state
    state = capture_rng_state()
    expected = draw_everything()
    path = save_checkpoint(tmp_path, 1, model_state={}, rng_state=state)
    draw_everything()  # move every generator on
    restore_rng_state(load_checkpoint(path).rng_state)  # through a weights_only load
    assert draw_everything() == expected
    assert state["cuda"] is None or len(state["cuda"]) == torch.cuda.device_count()


def test_rng_state_with_unavailable_cuda_generators(monkeypatch):
    state = capture_rng_state()
    expected = draw_everything()
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    state = dict(state, cuda=[torch.zeros(16, dtype=torch.uint8)] * (here + 1))
    with pytest.raises(ValueError, match=rf"saved with {here + 1} CUDA generator\(s\), "
                                         rf"this machine has {here}"):
        restore_rng_state(state)
    with pytest.warns(RuntimeWarning, match="CUDA generators not restored"):
        restore_rng_state(state, strict=False)
    assert draw_everything() == expected
    with pytest.raises(ValueError, match=r"missing \['numpy'\]"):
        restore_rng_state({k: v for k, v in state.items() if k != "numpy"})


def test_exact_resume_matches_an_uninterrupted_run(tmp_path):
    """Training with dropout and python/numpy/torch randomness, stopped after 3 of 6 steps,
    saved, restored into fresh objects, gives bit-identical weights and optimiser state."""

    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3),
                                    torch.nn.Linear(16, 1))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        return model, opt, sched

    def train(model, opt, sched, steps, data):
        for _ in range(steps):
            idx = data["order"][data["position"] % len(data["order"])]
            data["position"] += 1
            x = torch.randn(8, 6) + float(np.random.uniform()) + random.random() + idx
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    random.seed(0)
    np.random.seed(0)
    model, opt, sched = fresh()
    data = {"order": [3, 1, 2, 0], "position": 0}
    train(model, opt, sched, 6, data)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    random.seed(0)
    np.random.seed(0)
    model, opt, sched = fresh()
    data = {"order": [3, 1, 2, 0], "position": 0}
    train(model, opt, sched, 3, data)
    save_checkpoint(tmp_path, 3, model_state=model.state_dict(), optimizer_state=opt.state_dict(),
                    scheduler_state=sched.state_dict(), rng_state=capture_rng_state(),
                    data_state=dict(data))
    del model, opt, sched
    random.seed(99)
    np.random.seed(99)
    model, opt, sched = fresh()  # reseeds torch: the restore must undo it
    loaded = load_checkpoint(tmp_path)
    model.load_state_dict(loaded.model_state)
    opt.load_state_dict(loaded.optimizer_state)
    sched.load_state_dict(loaded.scheduler_state)
    restore_rng_state(loaded.rng_state)
    data = loaded.data_state
    train(model, opt, sched, 3, data)
    assert data["position"] == 6
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k


# -------------------------------------------------------------------- signals

def wait_for(flag_owner, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not flag_owner.requested and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _python_default_sigint():
    """Python's own SIGINT handler, as in a foreground run: a process started in the
    background by a shell (``cmd &``) inherits SIGINT ignored, and these tests check
    that GracefulExit gives the previous handler back."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigterm_sets_the_flag_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulExit() as stop:
        assert not stop.requested
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(stop)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_a_second_sigint_interrupts_as_before():
    with GracefulExit() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(stop)
        assert stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_graceful_exit_needs_the_main_thread():
    errors = []

    def enter():
        try:
            with GracefulExit():
                pass
        except RuntimeError as err:
            errors.append(str(err))

    worker = threading.Thread(target=enter)
    worker.start()
    worker.join()
    assert errors == ["GracefulExit: signal handlers can only be installed from the main thread"]
    stop = GracefulExit(signals=[signal.SIGUSR1])
    stop.request()
    assert stop.requested and stop.signal_name is None


# ------------------------------------------------- real signals, real process

CHILD = r"""
import sys, time, torch
from reference_impl.runlog.checkpoint import save_checkpoint
from reference_impl.runlog.signals import GracefulExit
directory, mode = sys.argv[1], sys.argv[2]
weights = torch.zeros(1 << 20)  # 4 MiB per checkpoint: a kill likely lands mid-write
with GracefulExit() as stop:
    for step in range(1, 10_000):
        weights += 1
        stopping = stop.requested  # read the flag once per step, as a trainer must
        if mode == "kill" or stopping:
            save_checkpoint(directory, step, model_state={"w": weights},
                            data_state={"position": step}, keep_last=3)
        if step == 1:
            print("running", flush=True)
        if stopping:
            print("saved", step, flush=True)
            sys.exit(0)
        time.sleep(0.001 if mode == "kill" else 0.01)
sys.exit(3)
"""


def start_child(directory, mode):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(directory), mode],
                            stdout=subprocess.PIPE, text=True, cwd=root)


def test_real_signals_sigterm_saves_and_exits_sigkill_leaves_a_loadable_latest(tmp_path):
    """Two child processes run at once (to share the start-up time): one gets SIGTERM
    and must save and exit 0; the other saves 4 MiB checkpoints back to back and is
    SIGKILLed, most likely mid-write; its latest checkpoint must load and verify."""
    term = start_child(tmp_path / "term", "term")
    kill = start_child(tmp_path / "kill", "kill")
    assert term.stdout.readline().strip() == "running"
    term.send_signal(signal.SIGTERM)
    assert kill.stdout.readline().strip() == "running"
    deadline = time.monotonic() + 20
    while len(steps_on_disk(tmp_path / "kill")) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.02))
    kill.kill()
    kill.wait(timeout=30)
    out, _ = term.communicate(timeout=30)

    assert term.returncode == 0
    step = int(out.split()[-1])
    loaded = load_checkpoint(tmp_path / "term")
    assert loaded.step == step and loaded.data_state == {"position": step}
    assert torch.equal(loaded.model_state["w"], torch.full((1 << 20,), float(step)))

    assert kill.returncode == -signal.SIGKILL
    loaded = load_checkpoint(tmp_path / "kill")  # full SHA-256 verification
    # Three step folders were seen, but the kill may land between the rename of the
    # newest and the update of `latest`, which then still names the one before.
    newest = max(steps_on_disk(tmp_path / "kill"))
    assert loaded.step >= 2 and loaded.step in (newest, newest - 1)
    assert loaded.data_state == {"position": loaded.step}
    assert torch.equal(loaded.model_state["w"], torch.full((1 << 20,), float(loaded.step)))


def test_a_sharded_checkpoint_is_hashed_and_falls_back_when_damaged(tmp_path):
    """sharded_state goes through torch.distributed.checkpoint into sharded/ (here one
    process, no group); the manifest hashes those files too, so a damaged shard makes a
    resume fall back to the older checkpoint, as for any other file."""
    import json

    from reference_impl.runlog.checkpoint import load_latest_intact

    w1, w2 = torch.arange(6.0).reshape(2, 3), -torch.arange(6.0).reshape(2, 3)
    save_checkpoint(tmp_path, 1, sharded_state={"model": {"w": w1}}, extra={"step": 1})
    path = save_checkpoint(tmp_path, 2, sharded_state={"model": {"w": w2}}, extra={"step": 2})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and "model" not in manifest["files"]
    assert ".metadata" in manifest["sharded"] and len(manifest["sharded"]) >= 2
    lazy = load_checkpoint(path)
    assert lazy.model_state is None and lazy.sharded == path / "sharded"
    assert torch.equal(load_checkpoint(path, consolidate=True).model_state["w"], w2)

    shard = next(f for f in (path / "sharded").iterdir() if f.suffix == ".distcp")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="SHA-256"):
        fallback = load_latest_intact(tmp_path)
    assert fallback.step == 1
    assert torch.equal(load_checkpoint(fallback.path, consolidate=True).model_state["w"], w1)
