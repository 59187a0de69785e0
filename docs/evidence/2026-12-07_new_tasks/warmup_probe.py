"""The warm-up probe of docs/evidence.md ("The two new task kinds", 2026-12-07), as run.

The trainer's supervised warm-up (``supervised_warmup``, its optimiser and rates) on the
built-in tiny model, and every ``every`` steps the share of fact digits (counts, rows and
columns, heights) whose argmax is right under teacher forcing on 128 held-out examples
with noise-free reference chains. Writes ``NAME.json`` in the working directory.

    python docs/evidence/2026-12-07_new_tasks/warmup_probe.py sp_base task=spatial
    python docs/evidence/2026-12-07_new_tasks/warmup_probe.py ba_long task=bars maxh=5 steps=2400 every=400

Options (key=value): task (chain/spatial/bars/rows), steps, every, lr, vlr, seed, image, bs,
theta (the language model's rotary base), grid, bars, maxh, frame (draw the grid and its
frame, line width in px), maxpix, oldlayout (bars: the layout before commit 3228af7),
m_<field> (a TINY_MODEL size). An evidence script with monkeypatches, not a tool.
The "one token per unit" row of the table was measured before that commit with a patch
drawing the geometry that is now ``BarDifferenceTask``'s own (``task=bars maxh=4``); the
columns were drawn by another random stream.
"""
import json
import sys
import time
from pathlib import Path

import torch

_ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(_ROOT), str(_ROOT / "adapters")]
from pgpo_torch import tiny
from pgpo_torch.tiny import build_tiny_model, build_tiny_processor

from reference_impl.data.chains import ChainCountTask, perception_token_mask
from reference_impl.data.visual_tasks import BarDifferenceTask, GridPlaceTask, RowOrderTask
from reference_impl.loop.warmup import (
    supervised_warmup,
    warmup_optimizer,
    warmup_target,
)
from reference_impl.policy.model import TINY_MODEL
from reference_impl.rollout.batch import teacher_forced_batch

name = sys.argv[1]
a = dict(task="spatial", steps=800, every=200, lr=3e-3, vlr=3e-4, seed=0, image=112,
         bs=32, theta=10000.0, grid=3, bars=3, maxh=5, frame=0, maxpix=50176, oldlayout=0)
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    a[k] = type(a[k])(v) if k in a else v
model_kw = dict(TINY_MODEL)
for k in list(a):
    if k.startswith("m_"):
        model_kw[k[2:]] = int(a[k])
torch.manual_seed(a["seed"])
torch.set_num_threads(1)
orig = tiny.build_tiny_config
def patched(*args, **kw):
    c = orig(*args, **kw)
    c.text_config.rope_parameters["rope_theta"] = a["theta"]
    return c
tiny.build_tiny_config = patched
proc = build_tiny_processor(min_pixels=3136, max_pixels=a["maxpix"])
model = build_tiny_model(proc, seed=a["seed"], **model_kw)
model.set_attn_implementation("sdpa"); model.train()
if a["task"] == "spatial":
    train = GridPlaceTask(a["seed"], grid=a["grid"], image_size=a["image"])
    held = GridPlaceTask(a["seed"], grid=a["grid"], image_size=a["image"], warmup_noise=0.0, split="heldout", size=128)
elif a["task"] == "bars":
    train = BarDifferenceTask(a["seed"], bars=a["bars"], max_height=a["maxh"], image_size=a["image"])
    held = BarDifferenceTask(a["seed"], bars=a["bars"], max_height=a["maxh"], image_size=a["image"], warmup_noise=0.0, split="heldout", size=128)
elif a["task"] == "rows":
    train = RowOrderTask(a["seed"], grid=a["grid"], image_size=a["image"])
    held = RowOrderTask(a["seed"], grid=a["grid"], image_size=a["image"], warmup_noise=0.0, split="heldout", size=128)
else:
    train = ChainCountTask(a["seed"], image_size=a["image"])
    held = ChainCountTask(a["seed"], image_size=a["image"], warmup_noise=0.0).heldout(128)
if a["frame"]:
    import dataclasses as _dc

    from PIL import ImageDraw
    def framed(task):
        get = task.__getitem__
        class F:
            def __len__(self): return len(task)
            def __getitem__(self, i):
                e = get(i); img = e.image.copy(); d = ImageDraw.Draw(img); s = img.size[0]
                g = a["grid"]
                for k in range(g + 1):
                    x = min(round(k * s / g), s - 1)
                    d.line([(x, 0), (x, s)], fill=(0, 0, 0), width=a["frame"])
                    d.line([(0, x), (s, x)], fill=(0, 0, 0), width=a["frame"])
                return _dc.replace(e, image=img)
        return F()
    train, held = framed(train), framed(held)
if a.get("oldlayout"):  # the bar layout before 3228af7: 0.88 of the image for max_height units
    from PIL import Image, ImageDraw

    from reference_impl.data.synthetic import COLORS as _C
    def _draw_old(self, columns, heights):
        slots = list(columns)  # left-to-right order as drawn
        s = self.image_size
        image = Image.new("RGB", (s, s), (255, 255, 255)); draw = ImageDraw.Draw(image)
        top, base = 0.06 * s, 0.94 * s
        unit = (base - top) / self.max_height
        for k in range(1, self.max_height + 1):
            y = base - k * unit
            draw.line([(0.04 * s, y), (0.96 * s, y)], fill=(200, 200, 200))
        width = 0.92 * s / (2 * len(slots) + 1)
        for i, c in enumerate(slots):
            x0 = 0.04 * s + (2 * i + 1) * width
            draw.rectangle([x0, base - heights[c] * unit, x0 + width, base], fill=_C[c])
        draw.line([(0.04 * s, base), (0.96 * s, base)], fill=(0, 0, 0), width=2)
        return image
    BarDifferenceTask._draw = _draw_old
held_ex = [held[i] for i in range(128)]
opt = warmup_optimizer(model, lr=a["lr"], vision_lr=a["vlr"])
it = iter(range(10**9))
def next_examples(n):
    return [train[next(it)] for _ in range(n)]
tok = proc.tokenizer

@torch.no_grad()
def evaluate():
    model.eval()
    right = total = 0
    for i in range(0, 128, 32):
        ex = held_ex[i:i+32]
        b = teacher_forced_batch(proc, [e.prompt for e in ex], [e.image for e in ex],
                                 [warmup_target(e) for e in ex])
        t = b.response_mask.shape[1]
        logits = model(**b.model_inputs(), logits_to_keep=t + 1, use_cache=False).logits[:, :-1]
        pred = logits.argmax(-1)
        for j, e in enumerate(ex):
            m = b.response_mask[j]
            ids = b.responses[j][m].tolist()
            toks = [tok.decode([x]) for x in ids]
            mask = perception_token_mask(toks, list(e.facts))
            for k, mk in enumerate(mask):
                if mk:
                    total += 1; right += int(pred[j][k].item() == ids[k])
    model.train()
    return right / max(total, 1), total

t0 = time.time(); log = []
done = 0
print(name, a, flush=True)
while done < a["steps"]:
    nxt = min(done + a["every"], a["steps"])
    losses = []
    supervised_warmup(model, proc, next_examples, optimizer=opt, steps=nxt, start=done,
                      batch_size=a["bs"], grad_clip=1.0, device=torch.device("cpu"),
                      on_step=lambda s, l: losses.append(l))
    done = nxt
    acc, n = evaluate()
    row = dict(step=done, loss=sum(losses[-20:]) / 20, tf_perc=acc, n=n, t=round(time.time() - t0))
    log.append(row); print(row, flush=True)
Path(f"{name}.json").write_text(json.dumps(dict(name=name, args=a, log=log)))
