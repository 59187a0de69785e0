"""Experiments built on the trainer: the accumulating algorithm study (:mod:`.compare`),
the gradient probe (:mod:`.probe_gradients`) and their statistics (:mod:`.stats`)."""
