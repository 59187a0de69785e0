"""Fixtures shared by the trainer tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Torch at one intra-op thread in this process, the count the tests' killed
    subprocesses run with (``OMP_NUM_THREADS=1``): a run compared exactly with one made
    partly in such subprocesses needs the same thread count, since on some CPUs (an AMD
    EPYC with 2 cores, 2026-12-07) 1 and 2 threads round a sum differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
