"""Run the trainer and kill it like SIGKILL (``os._exit(137)``: no cleanup, no flush) at
a named point; used by test_faults.py. ``python _fault_driver.py POINT ARGS...``.

Points:
  warmup_save      while writing model.pt of the checkpoint after the warm-up
  first_rl_step    at the first RL step (warm-up saved, its evaluation logged after the save)
  step2_renamed    after step 2's folder is renamed into place, before ``latest`` moves
  metrics_step3    half-way through writing step 3's metrics row
  report           at the start of the end-of-run report (final eval row already logged)
  after_line:TEXT  right after the trainer prints a line that starts with TEXT
  rank1_step2      (under torchrun) rank 1 only, as step 2 starts; the others go on

The run goes through the command line's ``cli`` (its one-line errors and exit statuses);
exit status 3 if it finished without reaching the point.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from reference_impl.runlog import metrics as logging_utils  # noqa: E402
from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from _tiny_run import varied_rewards  # noqa: E402


def die():
    os._exit(137)


def install(point: str) -> None:
    rl_step_mod.verifiable_rewards = varied_rewards
    if point == "warmup_save":
        real_save = torch.save

        def save(obj, f, *a, **k):
            real_save(obj, f, *a, **k)
            with open(f, "r+b") as fh:  # leave the file half-written
                fh.truncate(os.path.getsize(f) // 2)
            die()
        torch.save = save
    elif point == "first_rl_step":
        trainer_mod.Trainer.rl_step = lambda self: die()
    elif point == "step2_renamed":
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            real_replace(src, dst, *a, **k)
            if str(dst).endswith("step_00000002"):
                die()
        os.replace = replace
    elif point == "metrics_step3":
        real_log = logging_utils.MetricsLogger.log

        def log(self, step, metrics, *, kind="train"):
            if step == 3 and kind == "train":
                with open(self.path, "a") as f:
                    f.write('{"step": 3, "kind": "tr')
                die()
            real_log(self, step, metrics, kind=kind)
        logging_utils.MetricsLogger.log = log
    elif point == "report":
        trainer_mod.Trainer._report = lambda self, path: die()
    elif point.startswith("after_line:"):
        text = point.split(":", 1)[1]
        real_write = logging_utils.MetricsLogger.write

        def write(self, message):
            real_write(self, message)
            if message.startswith(text):
                die()
        logging_utils.MetricsLogger.write = write
    elif point == "rank1_step2":  # under torchrun: rank 1 dies as step 2 starts
        real_step = trainer_mod.Trainer.rl_step

        def rl_step(self):
            if self.env.rank == 1 and self.run.step == 1:
                die()
            return real_step(self)
        trainer_mod.Trainer.rl_step = rl_step
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from reference_impl.train import cli

    rc = cli(sys.argv[2:])
    sys.exit(rc or 3)  # 3: finished without reaching the kill point
