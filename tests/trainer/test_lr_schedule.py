"""reference_impl.loop.trainer.build_lr_scheduler: transformers' schedules, values by hand."""

import math

import pytest
import torch

from reference_impl.policy.model import build_lr_scheduler


def _lrs(schedule, warmup, total, steps, *, lr=2.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_lr_scheduler(opt, schedule, warmup=warmup, total=total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("schedule, warmup, total, expected", [
    ("constant", 0, 4, [2.0, 2.0, 2.0, 2.0, 2.0]),
    # Linear warm-up from 0 over 2 steps, then flat.
    ("constant", 2, 4, [0.0, 1.0, 2.0, 2.0, 2.0]),
    # Linear decay to 0 at step 4, held at 0 after.
    ("linear", 0, 4, [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]),
    ("linear", 2, 6, [0.0, 1.0, 2.0, 1.5, 1.0, 0.5, 0.0]),
    # Half a cosine period: 2 * (1 + cos(pi * k / 4)) / 2.
    ("cosine", 0, 4, [2.0, 1.0 + math.cos(math.pi / 4), 1.0, 1.0 - math.cos(math.pi / 4), 0.0]),
])
def test_schedule_values(schedule, warmup, total, expected):
    assert _lrs(schedule, warmup, total, len(expected)) == pytest.approx(expected, abs=1e-12)


def test_schedule_state_resumes_exactly():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(opt, "cosine", warmup=3, total=20)
    for _ in range(7):
        opt.step()
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = build_lr_scheduler(opt2, "cosine", warmup=3, total=20)
    opt2.load_state_dict(opt_state)  # the trainer restores both, as here
    sched2.load_state_dict(state)
    for _ in range(5):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
