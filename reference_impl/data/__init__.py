"""Data and tasks: examples and samplers from files (:mod:`.sources`), the synthetic chain
task (:mod:`.chains`), and the verifiable rewards (:mod:`.rewards`)."""
