"""Does a trained checkpoint read the bars' lengths, and by place? (docs/evidence.md, 2026-12-07,
seventh sitting). An evidence script, not a tool.

    python docs/evidence/2026-12-07_lengths/checkpoint_probe.py CHECKPOINT_DIR [TASK [SEED]]

Loads ``model.pt`` of a trainer checkpoint into the built-in tiny model and scores, under
teacher forcing, the fact digits of 256 held-out examples of the task (``lengths`` or
``region``) with noise-free reference chains: the mean probability of the true digit and the
argmax's accuracy, with the image, with a blank (white) image, and **mirrored** (the image
flipped top to bottom, the chain kept). A model that reads each bar's length by its place
gives the true digits less probability mirrored (the top bar now sits below); one that reads
only the lengths' total or their multiset does not lose any. Prints one JSON line.
"""
import json
import sys
from pathlib import Path

import torch
from PIL import Image

_ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(_ROOT), str(_ROOT / "adapters")]
from reference_impl.config import load_config  # noqa: E402
from reference_impl.data.chains import perception_token_mask  # noqa: E402
from reference_impl.data.visual_tasks import TASKS  # noqa: E402
from reference_impl.loop.warmup import warmup_target  # noqa: E402
from reference_impl.policy.model import build_policy  # noqa: E402
from reference_impl.rollout.batch import teacher_forced_batch  # noqa: E402


@torch.no_grad()
def probe(model, proc, examples, variant: str) -> dict[str, float]:
    tok = proc.tokenizer
    right = total = 0
    p_true = 0.0
    for i in range(0, len(examples), 32):
        ex = examples[i:i + 32]
        images = [e.image for e in ex]
        if variant == "blank":
            images = [Image.new("RGB", im.size, (255, 255, 255)) for im in images]
        elif variant == "mirrored":
            images = [im.transpose(Image.Transpose.FLIP_TOP_BOTTOM) for im in images]
        b = teacher_forced_batch(proc, [e.prompt for e in ex], images,
                                 [warmup_target(e) for e in ex])
        t = b.response_mask.shape[1]
        logits = model(**b.model_inputs(), logits_to_keep=t + 1, use_cache=False).logits[:, :-1]
        pred, probs = logits.argmax(-1), logits.float().softmax(-1)
        for j, e in enumerate(ex):
            ids = b.responses[j][b.response_mask[j]].tolist()
            mask = perception_token_mask([tok.decode([x]) for x in ids], list(e.facts))
            for k, on in enumerate(mask):
                if on:
                    total += 1
                    right += int(pred[j][k].item() == ids[k])
                    p_true += probs[j, k, ids[k]].item()
    return {"argmax": right / total, "p_true": p_true / total, "digits": total}


def main(checkpoint: str, task: str = "lengths", seed: str = "0") -> None:
    torch.set_num_threads(1)
    cfg = load_config([f"data.synthetic_task={task}", f"train.seed={seed}"],
                      check_environment=False)
    model, proc = build_policy(cfg, torch.device("cpu"))
    model.load_state_dict(torch.load(Path(checkpoint) / "model.pt", map_location="cpu"))
    model.eval()
    heldout = TASKS[task](int(seed), warmup_noise=0.0).heldout(256)
    examples = [heldout[i] for i in range(256)]
    out = {"checkpoint": checkpoint, "task": task, "seed": int(seed)}
    for variant in ("image", "blank", "mirrored"):
        out[variant] = probe(model, proc, examples, variant)
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
