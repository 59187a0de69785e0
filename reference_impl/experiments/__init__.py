"""Experiments built on the trainer: the accumulating algorithm study (:mod:`.compare`, its tables and figure in :mod:`.tables`),
the gradient probe (:mod:`.probe_gradients`); their intervals are :mod:`reference_impl.stats`."""
