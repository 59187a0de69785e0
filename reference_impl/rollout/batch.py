"""Rollouts for a Qwen2.5-VL policy: G sampled responses per prompt, as padded tensors.

A :class:`RolloutBatch` holds ``N = prompts * G`` sequences laid out as the
PGPO adapters expect: left-padded prompts (``P`` columns, image placeholders
included) followed by right-padded responses (``T`` columns). Sampling is done by a
rollout engine (:mod:`reference_impl.rollout.engines`): Hugging Face ``generate``
(:func:`generate_rollouts`, the default) or vLLM; both assemble their output with
:func:`assemble_rollout_batch`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch


@dataclasses.dataclass
class RolloutBatch:
    """``N`` prompt+response sequences; tensors on the policy's device.

    ``input_ids``/``attention_mask``/``mm_token_type_ids`` are ``(N, P + T)``;
    ``response_mask`` is ``(N, T)`` (True on response tokens up to and including
    the end-of-turn token); ``group_ids`` is ``(N,)``. ``rollout_logprobs`` (``(N, T)``
    float32, 0 under padding) are the sampled tokens' log-probs as the rollout engine
    saw them, when it reports them (vLLM); ``finish_reasons`` is ``'stop'`` (ended with
    the end-of-turn token) or ``'length'`` per response, when known.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    response_mask: torch.Tensor
    prompt_length: int
    group_ids: torch.Tensor
    texts: list[str]
    answers: list[str]
    rollout_logprobs: Optional[torch.Tensor] = None
    finish_reasons: Optional[list[str]] = None

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def responses(self) -> torch.Tensor:
        """``(N, T)`` response token ids (padding where ``response_mask`` is False)."""
        return self.input_ids[:, self.prompt_length:]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model(...)``: the full sequences with their images."""
        return dict(input_ids=self.input_ids, attention_mask=self.attention_mask,
                    mm_token_type_ids=self.mm_token_type_ids, pixel_values=self.pixel_values,
                    image_grid_thw=self.image_grid_thw)

    def select(self, rows: Sequence[int] | torch.Tensor) -> "RolloutBatch":
        """The sub-batch of the given rows (images follow their rows)."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.input_ids.device)
        patches = (self.image_grid_thw.prod(-1)).tolist()
        starts = [0]
        for n in patches:
            starts.append(starts[-1] + n)
        pieces = [self.pixel_values[starts[r]:starts[r + 1]] for r in rows.tolist()]
        pixel_values = (torch.cat(pieces) if pieces
                        else self.pixel_values[:0])
        return RolloutBatch(
            input_ids=self.input_ids[rows], attention_mask=self.attention_mask[rows],
            mm_token_type_ids=self.mm_token_type_ids[rows], pixel_values=pixel_values,
            image_grid_thw=self.image_grid_thw[rows], response_mask=self.response_mask[rows],
            prompt_length=self.prompt_length, group_ids=self.group_ids[rows],
            texts=[self.texts[r] for r in rows.tolist()],
            answers=[self.answers[r] for r in rows.tolist()],
            rollout_logprobs=(None if self.rollout_logprobs is None
                              else self.rollout_logprobs[rows]),
            finish_reasons=(None if self.finish_reasons is None
                            else [self.finish_reasons[r] for r in rows.tolist()]))


def concat_batches(batches: Sequence[RolloutBatch], *, pad_token_id: int) -> RolloutBatch:
    """One batch from several (e.g. dynamic-sampling rounds): prompts re-padded on the left,
    responses on the right; group ids renumbered so groups stay distinct."""
    batches = [b for b in batches if b.size > 0]
    if not batches:
        raise ValueError("batches: nothing to concatenate")
    if len(batches) == 1:
        return batches[0]
    p = max(b.prompt_length for b in batches)
    t = max(b.response_mask.shape[1] for b in batches)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("ids", "attn", "mm", "resp_mask",
                                                            "groups", "logp")}
    with_logp = all(b.rollout_logprobs is not None for b in batches)
    with_finish = all(b.finish_reasons is not None for b in batches)
    offset = 0
    for b in batches:
        lp, lt = p - b.prompt_length, t - b.response_mask.shape[1]
        n = b.size
        ids, attn, mm = b.input_ids, b.attention_mask, b.mm_token_type_ids

        def pad(x: torch.Tensor, value: int) -> torch.Tensor:
            left = torch.full((n, lp), value, dtype=x.dtype, device=x.device)
            right = torch.full((n, lt), value, dtype=x.dtype, device=x.device)
            return torch.cat([left, x, right], dim=1)

        parts["ids"].append(pad(ids, pad_token_id))
        parts["attn"].append(pad(attn, 0))
        parts["mm"].append(pad(mm, 0))
        parts["resp_mask"].append(torch.cat(
            [b.response_mask, torch.zeros((n, lt), dtype=torch.bool, device=ids.device)], dim=1))
        if with_logp:
            parts["logp"].append(torch.cat([b.rollout_logprobs, torch.zeros(
                (n, lt), dtype=b.rollout_logprobs.dtype, device=ids.device)], dim=1))
        _, inverse = torch.unique(b.group_ids, return_inverse=True)
        parts["groups"].append(inverse + offset)
        offset += int(inverse.max().item()) + 1
    return RolloutBatch(
        input_ids=torch.cat(parts["ids"]), attention_mask=torch.cat(parts["attn"]),
        mm_token_type_ids=torch.cat(parts["mm"]),
        pixel_values=torch.cat([b.pixel_values for b in batches]),
        image_grid_thw=torch.cat([b.image_grid_thw for b in batches]),
        response_mask=torch.cat(parts["resp_mask"]), prompt_length=p,
        group_ids=torch.cat(parts["groups"]),
        texts=[x for b in batches for x in b.texts],
        answers=[x for b in batches for x in b.answers],
        rollout_logprobs=torch.cat(parts["logp"]) if with_logp else None,
        finish_reasons=[x for b in batches for x in b.finish_reasons] if with_finish else None)


def chat_prompt(processor: Any, question: str, *, system_prompt: str | None) -> str:
    """The chat-formatted prompt text for one image + ``question``."""
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": question}]})
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_text_lengths(processor: Any, questions: Sequence[str], *,
                        system_prompt: str | None = None) -> list[int]:
    """Tokens of each chat-formatted prompt with its image still one placeholder token:
    a lower bound on the length :func:`encode_prompts` gives it (the processor expands the
    placeholder into the image's tokens), from the tokenizer alone (no image is
    processed). A prompt whose bound exceeds the limit is too long for sure."""
    texts = [chat_prompt(processor, q, system_prompt=system_prompt) for q in questions]
    return [len(ids) for ids in
            processor.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def prompts_that_fit(processor: Any, questions: Sequence[str], limit: int, *,
                     system_prompt: str | None = None) -> list[bool]:
    """Whether each prompt's text alone (:func:`prompt_text_lengths`) is at most ``limit``
    tokens: the check made before a prompt is sampled, trained on or evaluated, so that
    one over-long question never pads a batch (memory in the square of its length)."""
    return [n <= limit for n in prompt_text_lengths(processor, questions,
                                                    system_prompt=system_prompt)]


def encode_prompts(processor: Any, questions: Sequence[str], images: Sequence[Any], *,
                   system_prompt: str | None, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Left-padded prompt tensors (``input_ids``, ``attention_mask``, ``mm_token_type_ids``,
    ``pixel_values``, ``image_grid_thw``) for ``questions`` with one image each."""
    if len(questions) != len(images):
        raise ValueError(f"images: {len(images)} images for {len(questions)} questions")
    texts = [chat_prompt(processor, q, system_prompt=system_prompt) for q in questions]
    enc = processor(text=texts, images=list(images), return_tensors="pt", padding=True,
                    padding_side="left")
    keys = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")
    missing = [k for k in keys if k not in enc]
    if missing:
        raise ValueError(f"processor: its output lacks {missing}; a Qwen2.5-VL processor "
                         "returning mm_token_type_ids is required (mRoPE positions)")
    return {k: enc[k].to(device) for k in keys}


def response_mask_from_ids(responses: torch.Tensor, *, eos_token_id: int) -> torch.Tensor:
    """True on every generated token up to and including the first ``eos_token_id``."""
    is_eos = responses == eos_token_id
    after_eos = (torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()) > 0
    return ~after_eos


def end_of_turn_id(processor: Any) -> int:
    """The token that ends an assistant turn (``<|im_end|>`` for Qwen)."""
    tok = processor.tokenizer
    tid = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(tid, int) and tid != tok.unk_token_id and tid >= 0:
        return tid
    if tok.eos_token_id is None:
        raise ValueError("processor: its tokenizer has neither <|im_end|> nor an eos token")
    return int(tok.eos_token_id)


def placeholder_token_ids(processor: Any) -> list[int]:
    """Ids of the vision placeholder/marker tokens, which a response must never contain."""
    tok = processor.tokenizer
    ids = []
    for name in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>"):
        tid = tok.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid >= 0 and tid != tok.unk_token_id:
            ids.append(tid)
    return ids


def pad_token_id(processor: Any) -> int:
    tok = processor.tokenizer
    return int(tok.pad_token_id if tok.pad_token_id is not None else end_of_turn_id(processor))


@torch.no_grad()
def generate_rollouts(
    model: Any,
    processor: Any,
    questions: Sequence[str],
    images: Sequence[Any],
    answers: Sequence[str],
    *,
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    do_sample: bool = True,
    system_prompt: str | None = None,
    device: torch.device | str = "cpu",
    synced_gpus: bool = False,
    min_new_tokens: int = 0,
) -> RolloutBatch:
    """Sample ``group_size`` responses for each (question, image) with HF ``generate``.

    Responses ``i * group_size ... (i + 1) * group_size - 1`` belong to prompt ``i``
    (``group_ids`` = ``i``). Sampling draws from the global torch RNG, so a run
    restored with its RNG state samples the same responses. ``synced_gpus`` keeps
    every FSDP rank stepping until all have finished. ``min_new_tokens`` forbids the end
    of turn before that many tokens (benchmarks: the same length with every engine).
    """
    if group_size < 1:
        raise ValueError(f"group_size: must be >= 1, got {group_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
    rep_q = [q for q in questions for _ in range(group_size)]
    rep_i = [im for im in images for _ in range(group_size)]
    rep_a = [str(a) for a in answers for _ in range(group_size)]
    prompt = encode_prompts(processor, rep_q, rep_i, system_prompt=system_prompt, device=device)
    eos = end_of_turn_id(processor)
    pad = pad_token_id(processor)
    gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      pad_token_id=pad, eos_token_id=eos)
    banned = placeholder_token_ids(processor)
    if banned:  # an image placeholder in a response would break the next forward pass
        gen_kwargs["suppress_tokens"] = banned
    if synced_gpus:
        gen_kwargs["synced_gpus"] = True
    if min_new_tokens:
        gen_kwargs["min_new_tokens"] = min(min_new_tokens, max_new_tokens)
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    unwrapped = getattr(model, "module", model)
    was_training = unwrapped.training
    unwrapped.eval()
    try:
        out = unwrapped.generate(**prompt, **gen_kwargs)
    finally:
        unwrapped.train(was_training)
    p = prompt["input_ids"].shape[1]
    responses = out[:, p:]
    if responses.shape[1] == 0:  # nothing generated at all
        responses = torch.full((out.shape[0], 1), eos, dtype=out.dtype, device=out.device)
    return assemble_rollout_batch(processor, prompt, responses, answers=rep_a,
                                  group_size=group_size)


def assemble_rollout_batch(processor: Any, prompt: dict[str, torch.Tensor],
                           responses: torch.Tensor, *, answers: Sequence[str], group_size: int,
                           rollout_logprobs: torch.Tensor | None = None) -> RolloutBatch:
    """A :class:`RolloutBatch` from left-padded ``prompt`` tensors (:func:`encode_prompts`,
    one row per response) and ``(N, T)`` generated ids. Each response is cut after its
    first end-of-turn token (padding after it); ``finish_reasons`` follow from that."""
    eos, pad = end_of_turn_id(processor), pad_token_id(processor)
    device = prompt["input_ids"].device
    responses = responses.to(device=device, dtype=prompt["input_ids"].dtype)
    response_mask = response_mask_from_ids(responses, eos_token_id=eos)
    responses = responses.masked_fill(~response_mask, pad)
    ended = ((responses == eos) & response_mask).any(-1).tolist()
    texts = processor.tokenizer.batch_decode(
        [r[m] for r, m in zip(responses, response_mask)], skip_special_tokens=True)
    n, t = responses.shape
    if n % group_size:
        raise ValueError(f"group_size: {n} responses are not a whole number of groups of "
                         f"{group_size}")
    if rollout_logprobs is not None:
        rollout_logprobs = rollout_logprobs.to(device=device, dtype=torch.float32)
        rollout_logprobs = rollout_logprobs.masked_fill(~response_mask, 0.0)
    return _prompt_and_responses(
        prompt, responses, response_mask,
        group_ids=torch.arange(n // group_size, device=device).repeat_interleave(group_size),
        texts=texts, answers=[str(a) for a in answers], rollout_logprobs=rollout_logprobs,
        finish_reasons=["stop" if e else "length" for e in ended])


def _prompt_and_responses(prompt: dict[str, torch.Tensor], responses: torch.Tensor,
                          response_mask: torch.Tensor, **fields: Any) -> RolloutBatch:
    """The batch of left-padded ``prompt`` tensors followed by ``(N, T)`` ``responses``
    (``response_mask``: their tokens); ``fields``: the rest of :class:`RolloutBatch`."""
    n, t = responses.shape
    mm = prompt["mm_token_type_ids"]
    return RolloutBatch(
        input_ids=torch.cat([prompt["input_ids"], responses], dim=1),
        attention_mask=torch.cat([prompt["attention_mask"], response_mask.long()], dim=1),
        mm_token_type_ids=torch.cat(
            [mm, torch.zeros((n, t), dtype=mm.dtype, device=mm.device)], dim=1),
        pixel_values=prompt["pixel_values"], image_grid_thw=prompt["image_grid_thw"],
        response_mask=response_mask, prompt_length=prompt["input_ids"].shape[1], **fields)


def teacher_forced_batch(
    processor: Any,
    questions: Sequence[str],
    images: Sequence[Any],
    targets: Sequence[str],
    *,
    system_prompt: str | None = None,
    device: torch.device | str = "cpu",
) -> RolloutBatch:
    """A :class:`RolloutBatch` whose responses are the given ``targets`` (plus end of turn),
    for supervised warm-up: the same layout as sampled rollouts, one group per row."""
    if len(targets) != len(questions):
        raise ValueError(f"targets: {len(targets)} targets for {len(questions)} questions")
    prompt = encode_prompts(processor, questions, images, system_prompt=system_prompt,
                            device=device)
    eos, pad = end_of_turn_id(processor), pad_token_id(processor)
    ids = [processor.tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in targets]
    t = max(len(x) for x in ids)
    responses = torch.full((len(ids), t), pad, dtype=prompt["input_ids"].dtype)
    for i, x in enumerate(ids):
        responses[i, :len(x)] = torch.tensor(x)
    responses = responses.to(device)
    mask = torch.arange(t, device=device)[None, :] < torch.tensor(
        [len(x) for x in ids], device=device)[:, None]
    n = len(ids)
    return _prompt_and_responses(prompt, responses, mask,
                                 group_ids=torch.arange(n, device=device), texts=list(targets),
                                 answers=[""] * n)


def response_logprobs(
    model: Any,
    batch: RolloutBatch,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the response tokens under ``model`` (the visual pass), ``(N, T)`` float32.

    Runs ``model``'s own forward (a DDP/FSDP-wrapped module must see it; the adapter's
    :func:`pgpo_torch.response_token_logprobs` calls sub-modules directly). Only the last
    ``T + 1`` positions go through the LM head (``logits_to_keep``), so no
    ``(N, P + T, V)`` logits tensor is built. The log-probs (and, with ``with_entropy``,
    the entropy) come from :func:`pgpo_torch.logprobs_from_logits`.
    """
    from pgpo_torch import logprobs_from_logits

    t = batch.response_mask.shape[1]
    out = model(**batch.model_inputs(), logits_to_keep=t + 1, use_cache=False)
    return logprobs_from_logits(out.logits[:, :-1, :], batch.responses,
                                temperature=temperature, with_entropy=with_entropy)


__all__ = ["RolloutBatch", "assemble_rollout_batch", "chat_prompt", "encode_prompts",
           "end_of_turn_id", "generate_rollouts", "pad_token_id", "response_logprobs",
           "placeholder_token_ids", "prompts_that_fit", "teacher_forced_batch",
           "response_mask_from_ids"]
