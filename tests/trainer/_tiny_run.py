"""Smallest trainer settings that still exercise every stage (shared by the trainer tests)."""

TINY = [
    "data.image_size=56", "data.min_pixels=3136", "data.max_pixels=3136", "data.eval_size=2",
    "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2",
    "rollout.max_response_length=6",
    "optim.mini_batch_size=1", "optim.micro_batch_size=2",
    "model.sft_warmup_steps=0",
    "eval.num_prompts=2", "eval.k=1", "eval.every=0", "eval.at_start=false",
    "logging.progress_bar=false", "logging.tensorboard=false",
    "logging.html_samples=2", "checkpoint.every=0",
]


def tiny_args(output_dir, *extra):
    return [*TINY, f"train.output_dir={output_dir}", *extra]
