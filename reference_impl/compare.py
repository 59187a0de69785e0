"""Entry point: ``python reference_impl/compare.py``, the experiment in
:mod:`reference_impl.experiments.compare` (its docstring says what it does)."""

import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reference_impl.experiments.compare import main  # noqa: E402

if __name__ == "__main__":
    main()
