"""Data and tasks: :class:`~.examples.Example` and its resumable sampler (:mod:`.examples`),
the synthetic tasks (:mod:`.synthetic`, :mod:`.chains`, :mod:`.visual_tasks`), the file
loader (:mod:`.sources`) and the export to files (:mod:`.export`), the run's datasets
(:mod:`.datasets`), and the verifiable rewards (:mod:`.rewards`)."""
