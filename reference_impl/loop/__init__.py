"""The training loop: :class:`.trainer.Trainer` (warm-up, RL steps in named phases,
evaluation, checkpoints, report), its run state, the supervised warm-up, the checks
before the model is built (:mod:`.preflight`) and the phase timers (:mod:`.timing`)."""
