"""A tiny, fully offline Qwen2.5-VL (model + processor) for tests, examples and benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the fly (with the
``tokenizers`` library) on a small fixed corpus, carrying Qwen2.5-VL's special tokens
(``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>`` as pad, ``<|vision_start|>``,
``<|vision_end|>``, ``<|image_pad|>``, ...) and a Qwen-style chat template; the image
processor is ``Qwen2VLImageProcessorPil`` (no torchvision) with small pixel bounds so a
56 x 56 image becomes a 4 x 4 patch grid, i.e. 4 visual tokens after the 2 x 2 merge; the
model is ``Qwen2_5_VLForConditionalGeneration`` built from a tiny config whose token ids
match the tokenizer's.

Multimodal RoPE: transformers 5 builds Qwen2.5-VL's 3-row (temporal, height, width)
position ids in ``model.model.get_rope_index`` only when ``mm_token_type_ids`` (0 text,
1 image, 2 video; the processor returns it) is passed along with ``input_ids`` and
``image_grid_thw``. Without it the model silently falls back to 1-D positions. Only the
``<|image_pad|>`` tokens have type 1; ``<|vision_start|>``/``<|vision_end|>`` are text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

__all__ = [
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "build_tiny_tokenizer",
    "build_tiny_processor",
    "build_tiny_config",
    "build_tiny_model",
    "build_tiny_qwen2_5_vl",
]

# Qwen2.5-VL's special tokens, in Qwen's order (ids follow the BPE vocabulary here).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A Qwen-style ChatML template: string or list content; images and videos become
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad token to the
# image's number of visual tokens). No default system message, to keep tiny prompts short.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_CORPUS = (
    "system user assistant",
    "You are a helpful assistant. Look at the image and answer the question.",
    "What is shown in the image? How many triangles are there? Find the area of the shape.",
    "<think>The image shows a red square and a blue circle.</think> \\boxed{2}",
    "<think>Let x be the side length; then x^2 = 16, so x = 4.</think> The answer is \\boxed{4}.",
    "<think> angle ABC = 30 degrees, so the other angle is 60. </think>\\boxed{60}",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 25 36 49 64 81 100 3.14 -7 1/2",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "+ - * / = < > ( ) [ ] { } . , ; : ! ? ' \" \\ | _ ^ % $ # @ & ~",
    "\\boxed{} \\frac{1}{2} \\sqrt{2} \\pi \\times \\cdot",
    "A) B) C) D) Answer: yes no true false left right top bottom",
)


@functools.lru_cache(maxsize=4)
def _trained_bpe(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so frequent pieces (think tags, boxed) become merges.
    tok.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    return tok.to_str()


def build_tiny_tokenizer(*, bpe_vocab_size: int = 512):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen2.5-VL's special tokens.

    Deterministic (trained on a fixed corpus). ``<|endoftext|>`` is the pad token,
    ``<|im_end|>`` the end-of-sequence token; ``image_token``/``video_token`` and their
    ids are set as attributes, as the Qwen2.5-VL processor expects.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    if not isinstance(bpe_vocab_size, int) or bpe_vocab_size < 256 + 8:
        raise ValueError(f"bpe_vocab_size: must be an int >= 264, got {bpe_vocab_size!r}")
    backend = Tokenizer.from_str(_trained_bpe(bpe_vocab_size))
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        unk_token=None,
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.image_token = "<|image_pad|>"
    tokenizer.video_token = "<|video_pad|>"
    tokenizer.vision_start_token = "<|vision_start|>"
    tokenizer.vision_end_token = "<|vision_end|>"
    tokenizer.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    tokenizer.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    return tokenizer


def build_tiny_processor(*, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112,
                         bpe_vocab_size: int = 512):
    """A ``Qwen2_5_VLProcessor`` built offline: tiny BPE tokenizer + PIL image processor.

    With the defaults (patch 14, merge 2) a 56 x 56 image gives ``image_grid_thw =
    (1, 4, 4)`` and 4 ``<|image_pad|>`` tokens; the largest image (after resizing) is
    112 x 112, i.e. 16 visual tokens. ``processor.apply_chat_template(messages,
    add_generation_prompt=True)`` and ``processor(text=..., images=...)`` work as with the
    released processor; the latter returns ``mm_token_type_ids``.
    """
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = build_tiny_tokenizer(bpe_vocab_size=bpe_vocab_size)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14,
        temporal_patch_size=2, merge_size=2,
    )
    return _ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         video_processor=None, chat_template=CHAT_TEMPLATE)


@functools.lru_cache(maxsize=1)
def _image_only_class():
    from transformers import Qwen2_5_VLProcessor

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        """``Qwen2_5_VLProcessor`` without a video processor (which needs torchvision).

        transformers checks every sub-processor's class on construction, and the video
        processor's base class cannot be imported without torchvision; ``None`` is
        accepted for it here. Images and text behave exactly as in the parent class.
        """

        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return type(None)
            return super().check_argument_for_proper_class(argument_name, argument)

    return ImageOnlyQwen2_5_VLProcessor


def _ImageOnlyQwen2_5_VLProcessor(**kwargs):
    return _image_only_class()(**kwargs)


def build_tiny_config(processor=None, *, hidden_size: int = 64, num_layers: int = 2,
                      num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int = 128,
                      vision_hidden_size: int = 32, vision_depth: int = 2,
                      vision_heads: int = 2, vocab_size: int | None = None,
                      tie_word_embeddings: bool = False, rope_theta: float = 10000.0,
                      mrope_section: Sequence[int] | None = None):
    """A tiny ``Qwen2_5_VLConfig`` whose token ids match ``processor``'s tokenizer.

    ``mrope_section`` splits the rotary half-dimension ``head_dim / 2`` (its frequencies
    ``rope_theta ** (-2 i / head_dim)``, fastest first) into (temporal, height, width)
    sections; None gives Qwen2.5-VL's 1 : 1.5 : 1.5 proportion. Three ints >= 0 summing
    to ``head_dim / 2`` choose another (e.g. ``[0, 4, 4]`` at head size 16: no temporal
    section, which a still image does not use, and the fastest frequencies to its rows).
    """
    from transformers import Qwen2_5_VLConfig

    processor = build_tiny_processor() if processor is None else processor
    tok = processor.tokenizer
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers),
                        ("num_heads", num_heads), ("num_kv_heads", num_kv_heads),
                        ("intermediate_size", intermediate_size),
                        ("vision_hidden_size", vision_hidden_size),
                        ("vision_depth", vision_depth), ("vision_heads", vision_heads)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a positive int, got {value!r}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads: hidden_size ({hidden_size}) must be divisible by num_heads "
            f"({num_heads}), and num_heads by num_kv_heads ({num_kv_heads})")
    head_dim = hidden_size // num_heads
    if head_dim % 2 or head_dim < 8:
        raise ValueError(f"hidden_size: head_dim = hidden_size / num_heads must be even and "
                         f">= 8, got {head_dim}")
    if vision_hidden_size % vision_heads or (vision_hidden_size // vision_heads) % 4:
        raise ValueError("vision_hidden_size: vision head dim must be a multiple of 4")
    half = head_dim // 2
    if isinstance(rope_theta, bool) or not isinstance(rope_theta, (int, float)) \
            or not rope_theta > 1:
        raise ValueError(f"rope_theta: must be a number > 1, got {rope_theta!r}")
    if mrope_section is None:
        temporal = half // 4
        height = (half - temporal) // 2
        mrope_section = [temporal, height, half - temporal - height]
    else:
        mrope_section = list(mrope_section)
        if len(mrope_section) != 3 or any(isinstance(v, bool) or not isinstance(v, int)
                                          or v < 0 for v in mrope_section) \
                or sum(mrope_section) != half:
            raise ValueError(f"mrope_section: three ints >= 0 summing to head_dim / 2 = "
                             f"{half}, got {mrope_section!r}")
    n_tokens = len(tok)
    vocab_size = n_tokens if vocab_size is None else vocab_size
    if vocab_size < n_tokens:
        raise ValueError(f"vocab_size: {vocab_size} is smaller than the tokenizer's {n_tokens}")
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text_config = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta),
                         "mrope_section": mrope_section},
        bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision_config = dict(
        depth=vision_depth, hidden_size=vision_hidden_size,
        intermediate_size=2 * vision_hidden_size, num_heads=vision_heads,
        patch_size=processor.image_processor.patch_size,
        spatial_merge_size=processor.image_processor.merge_size,
        temporal_patch_size=processor.image_processor.temporal_patch_size,
        window_size=112, out_hidden_size=hidden_size,
        fullatt_block_indexes=[vision_depth - 1],
    )
    return Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config,
                            tie_word_embeddings=tie_word_embeddings, **ids)


def build_tiny_model(processor=None, *, seed: int = 0, hidden_size: int = 64,
                     num_layers: int = 2, dtype: torch.dtype = torch.float32,
                     attn_implementation: str = "eager", **config_kwargs):
    """A randomly initialised tiny ``Qwen2_5_VLForConditionalGeneration`` in eval mode.

    Deterministic for a given ``seed`` (the global torch RNG state is restored after).
    Extra keyword arguments go to :func:`build_tiny_config`. ``attn_implementation``:
    ``"eager"`` (default) or ``"sdpa"``; both honour the 4-D additive masks of the masked
    blind pass.
    """
    if attn_implementation not in ("eager", "sdpa"):
        raise ValueError(f"attn_implementation: must be 'eager' or 'sdpa', got "
                         f"{attn_implementation!r}")
    from transformers import Qwen2_5_VLForConditionalGeneration

    if not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    config = build_tiny_config(processor, hidden_size=hidden_size, num_layers=num_layers,
                               **config_kwargs)
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to(dtype)
    model.eval()
    return model


def build_tiny_qwen2_5_vl(seed: int = 0, **model_kwargs):
    """``(model, processor)``: the tiny Qwen2.5-VL and its matching offline processor."""
    processor = build_tiny_processor()
    model = build_tiny_model(processor, seed=seed, **model_kwargs)
    return model, processor
