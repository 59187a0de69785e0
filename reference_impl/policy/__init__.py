"""The trained policy: building the model (:mod:`.model`), and running it on one or many
processes (:mod:`.distributed`: DDP/FSDP2 strategies and collectives)."""
