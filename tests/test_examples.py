"""The two scripts in examples/ run (their --quick mode) and train with PGPO's weights."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny shapes; many threads only contend on a shared machine
    yield
    torch.set_num_threads(threads)


def test_custom_loop_example(capsys):
    example = _load("custom_loop")
    # The toy reward, by hand: "red" has letters {r, e, d}; "bread" holds all three.
    assert example.reward("bread", "red") == 1.0
    assert example.reward("xyz", "red") == 0.0
    assert example.reward("Eh", "green") == pytest.approx(1 / 4)  # {g, r, e, n}: e only
    last = example.main(["--quick"])
    assert last["step"] == 2 and 0.0 <= last["reward"] <= 1.0
    assert math.isfinite(last["loss"]) and last["dependency_mean"] > 0.0
    # Eq. 7: each response's weights sum to its length, so the token mean is 1.
    assert last["weight_mean"] == pytest.approx(1.0, abs=1e-5)
    assert capsys.readouterr().out.count("step ") == 2


def test_trl_example(tmp_path):
    example = _load("trl_pgpo")
    assert example.colour_reward([[{"content": "bread"}], [{"content": "xyz"}]],
                                 answer=["red", "red"]) == [1.0, 0.0]
    trainer = example.main(["--quick", "--output_dir", str(tmp_path)])
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "pgpo/dependency_mean" in h]
    assert len(logged) == 2
    for h in logged:
        assert h["pgpo/dependency_mean"] > 0.0 and math.isfinite(h["loss"])
        assert h["pgpo/weight_mean"] == pytest.approx(1.0, abs=1e-5)  # Eq. 7
    assert trainer.args.pgpo.estimator == "k3" and trainer.args.blind_pass.mode == "drop"
