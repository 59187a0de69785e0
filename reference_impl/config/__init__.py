"""The run's configuration: one frozen dataclass per section (:mod:`.sections`), every
option declared once with its help, and the algorithm registry (:mod:`.algorithms`).

    from reference_impl.config import load_config, preset
    cfg = load_config(["algo.name=dapo", "rollout.temperature=0.7"])
"""

from reference_impl.config.sections import *  # noqa: F401,F403  (the public API)
from reference_impl.config.sections import __all__  # noqa: F401
