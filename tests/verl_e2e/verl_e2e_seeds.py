"""Per-sample sampling seeds for the end-to-end runs, so a resumed run re-samples step k
exactly as an uninterrupted one does.

verl 0.9.1 does not checkpoint vLLM's sampler state: a run resumed at step k starts a
fresh vLLM server whose random stream is the one of step 1, so its rollouts (and so its
loss) differ from the uninterrupted run's. ``rollout.full_determinism`` is no way out: it
gives every request the same seed (``verl/workers/rollout/vllm_rollout/vllm_async_server.py``
``sampling_params.setdefault("seed", self.replica_rank + self.config.seed)``), so the n
samples of a prompt are identical and GRPO has no signal. Here each request gets its own
seed from what identifies it in verl's own trajectory info (global step, the sample's
dataset index, its rollout number or, in the v1 loop, its session number;
``verl/experimental/agent_loop/agent_loop.py`` ``get_trajectory_info``), by wrapping ``AgentLoopWorker._run_agent_loop`` in the process
that imports it. Test support only.
"""

from __future__ import annotations

import functools
import zlib

from import_hooks import after_import

TARGET = "verl.experimental.agent_loop.agent_loop"


def sample_seed(trajectory: dict, session_id: int | None = None) -> int:
    """A 31-bit seed from ``(step, sample_index, rollout_n[, session_id])``. The legacy loop
    numbers a prompt's samples by ``rollout_n``; the v1 loop gives them one trajectory and
    numbers them by ``session_id`` (``verl/trainer/ppo/v1/agent_loop_tq.py``
    ``_run_prompt``)."""
    key = f"{trajectory['step']}/{trajectory['sample_index']}/{trajectory['rollout_n']}"
    if session_id is not None:
        key += f"/{session_id}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def _patch(module) -> None:
    worker = module.AgentLoopWorker
    original = worker._run_agent_loop
    if getattr(original, "_pgpo_seeded", False):
        return

    @functools.wraps(original)
    async def _run_agent_loop(self, sampling_params, trajectory, **kwargs):
        if not trajectory.get("validate", False):
            seed = sample_seed(trajectory, kwargs.get("session_id"))
            sampling_params = {**sampling_params, "seed": seed}
        return await original(self, sampling_params, trajectory, **kwargs)

    _run_agent_loop._pgpo_seeded = True
    worker._run_agent_loop = _run_agent_loop


def install() -> None:
    after_import(TARGET, _patch)
