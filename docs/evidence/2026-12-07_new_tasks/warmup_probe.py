"""The warm-up probe of docs/evidence.md ("The two new task kinds", 2026-12-07), as run.

The trainer's supervised warm-up (``supervised_warmup``, its optimiser and rates) on the
built-in tiny model, and every ``every`` steps the share of fact digits (counts, rows and
columns, heights) whose argmax is right under teacher forcing on 128 held-out examples
with noise-free reference chains, and the same with every image blank (white): what the
model states without looking (from 2026-12-07's signed questions on; ``p_true`` is the mean
probability of the true digit). Writes ``NAME.json`` in the working directory.

    python docs/evidence/2026-12-07_new_tasks/warmup_probe.py sp_base task=spatial
    python docs/evidence/2026-12-07_new_tasks/warmup_probe.py ba_long task=bars maxh=5 steps=2400 every=400

Options (key=value): task (chain/spatial/bars/rows/region), steps, every, lr, vlr, seed, image, bs,
theta (the language model's rotary base), grid, bars, maxh, frame (draw the grid and its
frame, line width in px), maxpix, oldlayout (bars: the layout before commit 3228af7),
m_<field> (a TINY_MODEL size), msec (the language model's mRoPE sections, e.g. ``0,4,4``;
2026-12-07, fifth sitting). An evidence script with monkeypatches, not a tool.
The "one token per unit" row of the table was measured before that commit with a patch
drawing the geometry that is now ``BarDifferenceTask``'s own (``task=bars maxh=4``); the
columns were drawn by another random stream. ``blocks=1`` draws each unit of a bar's height as
a separate square the size of a chain-task square (2026-12-07, after the signed questions).
``scatter=1`` scatters each bar's units as squares over the lattice (the chain task's
picture). ``chaindiff=1`` asks the chain task's pictures for the difference of the two counts
instead of their sum; ``chaindiff=2`` is its control, the same wording asked for the
sum. ``barsum=p`` asks a bars training question for the sum of the two heights with
probability ``p`` (the held-out probe keeps the difference questions); with
``sumsteps=K`` as well, every training question of the first ``K`` steps asks the sum and
every later one the difference (a curriculum). ``mix=p`` makes each warm-up example a chain-task example with probability ``p``.
``opening=K`` uses ``BarDifferenceTask``'s own opening (every bar's total height) for the
first ``K`` steps; ``probeopen=1`` probes held-out opening chains instead of difference
chains (2026-12-07, third sitting). ``mixsteps=K`` (same sitting) makes every example of the first ``K`` steps a
chain-task example and every later one the task's (a curriculum through the counting task).
``task=region`` (2026-12-07, fourth sitting): squares of random colours on the 4x4 token
lattice, "how many squares are in the top (bottom) half?" (``axis=rows``; ``axis=cols``:
left / right), each half 1..``regionmax`` squares; ``ropen=K`` asks the first ``K`` steps
for all the squares (the colour-blind total, as the chain task's sum). Its probe adds a
**mirror** pass: the image flipped across the halves' border with the chain kept, so a
model that reads where the squares are loses ``p`` and one that reads only how many
there are does not (``tf_perc_mirror``, ``p_true_mirror``).
"""
import json
import re
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
         bs=32, theta=10000.0, grid=3, bars=3, maxh=5, frame=0, maxpix=50176, oldlayout=0,
         blocks=0, mix=0.0, scatter=0, chaindiff=0, barsum=0.0, sumsteps=0, mixsteps=0, opening=0, probeopen=0, axis="rows", regionmax=4, ropen=0, msec="")
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
    if a["msec"]:  # e.g. msec=0,4,4: no temporal section, the fastest frequencies to rows
        sec = [int(v) for v in a["msec"].split(",")]
        assert sum(sec) == sum(c.text_config.rope_parameters["mrope_section"]), sec
        c.text_config.rope_parameters["mrope_section"] = sec
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
elif a["task"] == "region":  # 2026-12-07, fourth sitting: how many squares in one half
    import numpy as _np
    from PIL import Image as _Image, ImageDraw as _Draw

    from reference_impl.data.examples import Example as _Ex
    from reference_impl.data.synthetic import COLORS as _C
    class RegionCount:
        """Squares (random colours) on the 4x4 token lattice; "how many squares are in the
        top (bottom / left / right) half?". Each half holds 1..regionmax squares,
        drawn independently, so the answer is uniform over 1..regionmax whichever half is
        asked; the chain states both halves' counts, then the asked one."""
        def __init__(self, seed, split, noise):
            self.seed, self.split, self.noise = seed, split, noise
        def __len__(self): return 100_000
        def __getitem__(self, i):
            r = _np.random.default_rng([self.seed, self.split, i, 21])
            halves = ("top", "bottom") if a["axis"] == "rows" else ("left", "right")
            m = a["regionmax"]
            counts = {h: int(r.integers(1, m + 1)) for h in halves}
            asked = halves[int(r.integers(2))]
            s, g = a["image"], 4
            cell = s / g
            img = _Image.new("RGB", (s, s), (255, 255, 255)); d = _Draw.Draw(img)
            names = list(_C)
            for k, h in enumerate(halves):
                cells = [(row, col) for row in range(g) for col in range(g)
                         if ((row if a["axis"] == "rows" else col) < g // 2) == (k == 0)]
                for j in r.permutation(len(cells))[:counts[h]]:
                    row, col = cells[int(j)]
                    cx, cy, half = (col + 0.5) * cell, (row + 0.5) * cell, 0.32 * cell
                    d.rectangle([cx - half, cy - half, cx + half, cy + half],
                                fill=_C[names[int(r.integers(len(names)))]])
            stated = {h: (int(r.choice([v for v in range(1, m + 1) if v != n]))
                          if r.random() < self.noise else n) for h, n in counts.items()}
            order = [halves[j] for j in r.permutation(2)]
            ph = ("{c}: {n}.", "the {c} count is {n}.", "{c} squares: {n}.")
            steps = " ".join(ph[int(r.integers(3))].format(c=h, n=stated[h]) for h in order)
            ref = (f"<think>{steps} So the {asked} half has {stated[asked]}.</think> "
                   f"\\boxed{{{stated[asked]}}}")
            q = f"How many squares are in the {asked} half of the picture? Answer with a number."
            if i < a["ropen"] * a["bs"] and self.split == 0:  # the opening: all squares
                t = sum(stated.values())
                ref = f"<think>{steps} So {stated[order[0]]}+{stated[order[1]]}={t}.</think> \\boxed{{{t}}}"
                q = "How many squares are in the picture? Answer with a number."
                return _Ex(image=img, question=q, answer=str(sum(counts.values())), task="region",
                           id=f"region-open-{i}", reference=ref, facts=counts)
            return _Ex(image=img, question=q, answer=str(counts[asked]), task="region",
                       id=f"region-{self.split}-{i}", reference=ref, facts=counts)
    train, held = RegionCount(a["seed"], 0, 0.3), RegionCount(a["seed"], 1, 0.0)
else:
    train = ChainCountTask(a["seed"], image_size=a["image"])
    held = ChainCountTask(a["seed"], image_size=a["image"], warmup_noise=0.0).heldout(128)
if a["chaindiff"]:  # the chain task's pictures and facts, asked for a difference, not a sum
    import dataclasses as _dc

    import numpy as _np
    def as_difference(task, noise):
        get = task.__getitem__
        class D:
            def __len__(self): return len(task)
            def __getitem__(self, i):
                e = get(i); (ca, na), (cb, nb) = list(e.facts.items())
                r = _np.random.default_rng([a["seed"], i, 99])
                def stated(n):
                    if r.random() < noise:
                        return int(r.choice([k for k in range(1, 5) if k != n]))
                    return n
                sa, sb = stated(na), stated(nb)
                if a["chaindiff"] == 2:  # the control: the same wording, asked for the sum
                    q = (f"How many {ca} and {cb} squares are there together? Answer with a "
                         "number.")
                    ref = f"<think>{ca}: {sa}. {cb}: {sb}. So {sa}+{sb}={sa + sb}.</think> \\boxed{{{sa + sb}}}"
                    return _dc.replace(e, question=q, answer=str(na + nb), reference=ref)
                q = (f"How many more {ca} squares than {cb} squares are there? Answer with a "
                     "number, negative if there are fewer.")
                ref = f"<think>{ca}: {sa}. {cb}: {sb}. So {sa}-{sb}={sa - sb}.</think> \\boxed{{{sa - sb}}}"
                return _dc.replace(e, question=q, answer=str(na - nb), reference=ref)
        return D()
    train, held = as_difference(train, 0.3), as_difference(held, 0.0)
if a["barsum"]:  # bars: with probability barsum a training question asks for the sum
    import dataclasses as _dc

    import numpy as _np
    def with_sums(task, share):
        get = task.__getitem__
        class S:
            def __len__(self): return len(task)
            def __getitem__(self, i):
                e = get(i)
                r = _np.random.default_rng([a["seed"], i, 98])
                if a["sumsteps"]:  # a curriculum: sums for the first sumsteps steps only
                    if i >= a["sumsteps"] * a["bs"]:
                        return e
                elif r.random() >= share:
                    return e
                (ca, na), (cb, nb) = list(e.facts.items())
                sa, sb = (int(x) for x in re.findall(r"(?:: |is )(\d+)\.", e.reference)[:2])
                if e.reference.index(ca) > e.reference.index(cb):
                    sa, sb = sb, sa
                q = f"How tall are the {ca} bar and the {cb} bar together? Answer with a number."
                ref = f"<think>{ca}: {sa}. {cb}: {sb}. So {sa}+{sb}={sa + sb}.</think> \\boxed{{{sa + sb}}}"
                return _dc.replace(e, question=q, answer=str(na + nb), reference=ref)
        return S()
    train = with_sums(train, a["barsum"])
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
if a["blocks"]:  # bars as stacks of separate blocks, each drawn like a chain-task square
    from PIL import Image, ImageDraw

    from reference_impl.data.synthetic import COLORS as _C
    def _draw_blocks(self, columns, heights):
        s = self.image_size
        cell = s / self.max_height
        image = Image.new("RGB", (s, s), (255, 255, 255)); draw = ImageDraw.Draw(image)
        for c, column in columns.items():
            for k in range(heights[c]):
                cx, cy = (column + 0.5) * cell, s - (k + 0.5) * cell
                half = 0.32 * cell
                draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=_C[c])
        return image
    BarDifferenceTask._draw = _draw_blocks
if a["scatter"]:  # a bar's units as squares scattered over the lattice: the chain's image
    import numpy as _np
    from PIL import Image, ImageDraw

    from reference_impl.data.synthetic import COLORS as _C
    _scatter_rng = _np.random.default_rng(a["seed"] + 77)
    def _draw_scattered(self, columns, heights):
        s = self.image_size
        g = self.max_height
        cell = s / g
        image = Image.new("RGB", (s, s), (255, 255, 255)); draw = ImageDraw.Draw(image)
        fills = [_C[c] for c in columns for _ in range(heights[c])]
        for index, fill in zip(_scatter_rng.permutation(g * g), fills):
            row, col = divmod(int(index), g)
            cx, cy, half = (col + 0.5) * cell, (row + 0.5) * cell, 0.32 * cell
            draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill)
        return image
    BarDifferenceTask._draw = _draw_scattered
if a["opening"]:  # the task's own opening (BarDifferenceTask(opening=...)): all bars' total
    train = BarDifferenceTask(a["seed"], bars=a["bars"], max_height=a["maxh"], image_size=a["image"],
                              opening=a["opening"] * a["bs"])
    _get = train._example_at
    class _Opened:
        def __len__(self): return len(train)
        def __getitem__(self, i): return _get(i, i)  # stream position = index here
    train = _Opened()
held_ex = [held[i] for i in range(128)]
if a["probeopen"]:  # probe held-out opening chains (every bar's height) instead
    held_ex = [held.opening_example(i) for i in range(128)]
opt = warmup_optimizer(model, lr=a["lr"], vision_lr=a["vlr"])
it = iter(range(10**9))
chain_train = ChainCountTask(a["seed"] + 1000, image_size=a["image"])
mix_rng = torch.Generator().manual_seed(a["seed"])
def next_examples(n):
    """A batch of the task's examples; with ``mix`` > 0 each is a chain-task example with
    that probability (a curriculum: the chain task opens the image pathway)."""
    out = []
    for _ in range(n):
        i = next(it)
        chain = a["mix"] > 0 and torch.rand((), generator=mix_rng).item() < a["mix"]
        if a["mixsteps"]:  # a curriculum: chain-task examples only, for the first mixsteps steps
            chain = i < a["mixsteps"] * a["bs"]
        out.append(chain_train[i] if chain else train[i])
    return out
tok = proc.tokenizer

@torch.no_grad()
def evaluate(blank=False, mirror=False):
    """(argmax accuracy, mean probability of the true digit) over the fact digits; with
    ``blank`` every image is white (what the model states without looking); with
    ``mirror`` (region task) every image is flipped across the halves' border."""
    from PIL import Image
    model.eval()
    right = total = 0
    p_true = 0.0
    for i in range(0, 128, 32):
        ex = held_ex[i:i+32]
        images = [Image.new("RGB", e.image.size, (255, 255, 255)) if blank else e.image
                  for e in ex]
        if mirror:  # region task: the halves swapped, the chain kept (a reader of places
            # states the other half's count; a reader of the total is unaffected)
            flip = (Image.Transpose.FLIP_TOP_BOTTOM if a["axis"] == "rows"
                    else Image.Transpose.FLIP_LEFT_RIGHT)
            images = [im.transpose(flip) for im in images]
        b = teacher_forced_batch(proc, [e.prompt for e in ex], images,
                                 [warmup_target(e) for e in ex])
        t = b.response_mask.shape[1]
        logits = model(**b.model_inputs(), logits_to_keep=t + 1, use_cache=False).logits[:, :-1]
        pred = logits.argmax(-1)
        probs = logits.float().softmax(-1)
        for j, e in enumerate(ex):
            m = b.response_mask[j]
            ids = b.responses[j][m].tolist()
            toks = [tok.decode([x]) for x in ids]
            mask = perception_token_mask(toks, list(e.facts))
            for k, mk in enumerate(mask):
                if mk:
                    total += 1; right += int(pred[j][k].item() == ids[k])
                    p_true += probs[j, k, ids[k]].item()
    model.train()
    return right / max(total, 1), total, p_true / max(total, 1)

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
    acc, n, p_true = evaluate()
    acc_blank, _, p_blank = evaluate(blank=True)
    row = dict(step=done, loss=sum(losses[-20:]) / 20, tf_perc=acc, n=n, p_true=p_true,
               tf_perc_blank=acc_blank, p_true_blank=p_blank, t=round(time.time() - t0))
    if a["task"] == "region":
        row["tf_perc_mirror"], _, row["p_true_mirror"] = evaluate(mirror=True)
    log.append(row); print(row, flush=True)
Path(f"{name}.json").write_text(json.dumps(dict(name=name, args=a, log=log)))
