"""The numerical environment recorded in a run's summary.json (reference_impl.runlog.numerics)."""

import json

import numpy
import torch
import transformers

from reference_impl.runlog.numerics import numerical_environment


def test_numerical_environment_names_what_decides_the_bits(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    env = numerical_environment()
    assert json.loads(json.dumps(env)) == env  # plain JSON values
    assert env["torch"] == torch.__version__ and env["transformers"] == transformers.__version__
    assert env["numpy"] == numpy.__version__
    assert env["torch_num_threads"] == torch.get_num_threads()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["mkldnn_enabled"] is torch.backends.mkldnn.enabled
    assert env["deterministic_algorithms"] is False
    # Only the variables that are set, with their values.
    assert env["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and "MKL_CBWR" not in env["env"]


def test_numerical_environment_follows_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert numerical_environment()["torch_num_threads"] == 1
    finally:
        torch.set_num_threads(before)
