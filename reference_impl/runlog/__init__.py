"""What a run leaves on disk: checkpoints (:mod:`.checkpoint`), ``metrics.jsonl`` and
TensorBoard (:mod:`.metrics`), the learning curves and samples report (:mod:`.report`)."""
