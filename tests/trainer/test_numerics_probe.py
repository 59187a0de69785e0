"""bench/numerics_probe.py: the same settings in one process give the same fingerprint bit
for bit (what makes a seed's path reproducible on one machine), and a one-ulp change of a
single weight shows up in the weights' hash but not in the data's."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import TINY

pytestmark = pytest.mark.slow

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "numerics_probe.py"
SMALL = [a for a in TINY if not a.startswith(("model.sft_warmup_steps", "logging."))]


def _probe():
    spec = importlib.util.spec_from_file_location("numerics_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_settings_same_bits_and_one_ulp_is_seen(tmp_path):
    probe = _probe()

    def run(name, *extra):
        return probe.main(["--out", str(tmp_path / f"{name}.json"), "--warmup", "3",
                           "--rl-steps", "1", "--images", "4", *extra, *SMALL])

    a, b, c = run("a"), run("b"), run("perturbed", "--perturb")
    keys = ("images_train", "images_heldout", "tokenizer", "pixel_values", "input_ids",
            "weights_init", "first_logprobs", "warmup_losses_hex", "warmup_weights",
            "weights_after_warmup", "rl_sampled")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert len(a["warmup_losses_hex"]) == 3 and len(a["rl_sampled"]) >= 1
    assert a["environment"]["torch_num_threads"] >= 1
    for k in ("images_train", "images_heldout", "tokenizer", "pixel_values", "input_ids"):
        assert c[k] == a[k], k
    assert c["weights_init"] != a["weights_init"]
    assert (tmp_path / "a.logprobs.pt").exists() and (tmp_path / "a.weights.pt").exists()
