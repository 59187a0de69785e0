"""Rollouts: the batch of sampled responses and the prompt/response encoding
(:mod:`.batch`), and the engines that sample them (:mod:`.engines`: HF generate, vLLM)."""
