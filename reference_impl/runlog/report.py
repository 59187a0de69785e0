"""End-of-run report: a PNG of the learning curves and an HTML page of sample responses
whose tokens are coloured by their visual dependency ``S_t`` (PGPO Eq. 1)."""

from __future__ import annotations

import base64
import html
import io
import math
import os
from typing import Any, Sequence

from reference_impl.runlog.metrics import read_metrics

CURVES = (
    ("reward", "reward (train)"),
    ("accuracy", "accuracy (train rollouts)"),
    ("entropy", "entropy"),
    ("grad_norm", "gradient norm"),
    ("clip_frac", "clip fraction"),
    ("response_length", "response length"),
    ("dependency_mean", "dependency mean"),
    ("frac_above_tau", "fraction I_t >= tau"),
    ("kept_dependency_frac", "VPPO: share of S on kept tokens"),
)


def plot_learning_curves(metrics_path: str | os.PathLike, out_png: str | os.PathLike) -> str:
    """Plot the train metrics of ``metrics.jsonl`` and the held-out accuracy into a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(str(metrics_path))
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    panels = [(k, label) for k, label in CURVES if any(_num(r.get(k)) for r in train)]
    acc_key = next((k for r in evals for k in r if k.startswith("accuracy_avg@")), None)
    n = len(panels) + (1 if acc_key else 0)
    cols = 3
    fig, axes = plt.subplots(max(math.ceil(n / cols), 1), cols,
                             figsize=(4.2 * cols, 3.0 * max(math.ceil(n / cols), 1)),
                             squeeze=False)
    flat = list(axes.flat)
    i = 0
    if acc_key:
        xs = [r["step"] for r in evals if _num(r.get(acc_key))]
        ys = [r[acc_key] for r in evals if _num(r.get(acc_key))]
        flat[0].plot(xs, ys, marker="o")
        flat[0].set_title(f"held-out {acc_key}")
        flat[0].set_xlabel("RL step")
        i = 1
    for key, label in panels:
        xs = [r["step"] for r in train if _num(r.get(key))]
        ys = [r[key] for r in train if _num(r.get(key))]
        flat[i].plot(xs, ys)
        flat[i].set_title(label)
        flat[i].set_xlabel("RL step")
        i += 1
    for ax in flat[i:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return str(out_png)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _colour(value: float, top: float) -> str:
    """White (no dependency) to red (the largest dependency on the page)."""
    x = 0.0 if top <= 0 else min(max(value / top, 0.0), 1.0)
    g = int(round(255 * (1 - 0.75 * x)))
    return f"rgb(255,{g},{g})"


def _image_tag(image: Any) -> str:
    if image is None:
        return ""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" width="112" height="112">'


def write_samples_html(samples: Sequence[dict[str, Any]], out_html: str | os.PathLike, *,
                       title: str = "Sample responses") -> str:
    """An HTML page with one card per sample: the image, the question, the reference
    answer, the reward, and the response with each token's background shaded by ``S_t``
    (hover a token for its value). ``samples`` hold ``tokens`` and ``dependency`` (equal
    lengths), ``question``, ``answer``, ``reward``, optionally a PIL ``image`` and a
    ``perception`` mask of the tokens that state a fact read off the image (underlined)."""
    top = max((max(s["dependency"], default=0.0) for s in samples), default=0.0)
    cards = []
    for s in samples:
        if len(s["tokens"]) != len(s["dependency"]):
            raise ValueError("samples: tokens and dependency differ in length")
        marked = s.get("perception") or [False] * len(s["tokens"])
        spans = "".join(
            f'<span title="S={d:.4g}" style="background:{_colour(d, top)}"'
            f'{" class=perc" if m else ""}>'
            f"{html.escape(t).replace(chr(10), '&#8629;<br>')}</span>"
            for t, d, m in zip(s["tokens"], s["dependency"], marked))
        cards.append(
            '<div class="card">'
            f'<div class="img">{_image_tag(s.get("image"))}</div>'
            f'<div class="body"><p><b>Q:</b> {html.escape(s["question"])}</p>'
            f'<p><b>reference:</b> {html.escape(str(s["answer"]))} &nbsp; '
            f'<b>reward:</b> {s["reward"]:.2f}</p>'
            f'<p class="resp">{spans}</p></div></div>')
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 960px; margin: 2em auto; }}
.card {{ display: flex; gap: 1em; border: 1px solid #ccc; padding: .8em; margin: .8em 0; }}
.resp {{ font-family: monospace; white-space: pre-wrap; line-height: 1.6; }}
.resp span {{ border-radius: 2px; }}
.resp span.perc {{ text-decoration: underline; text-decoration-thickness: 2px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Each response token is shaded by its visual dependency
S<sub>t</sub> = KL(&pi;(&middot;|image, text) || &pi;(&middot;|text)) (PGPO Eq. 1):
white = the image does not change the next-token distribution, red = the largest
dependency on this page (S = {top:.4g}). Hover a token for its value. Underlined: tokens
that state a fact read off the image (where the task knows them).</p>
{''.join(cards)}
</body></html>
"""
    with open(out_html, "w", encoding="utf-8") as f:
        f.write(page)
    return str(out_html)


def write_report(output_dir: str | os.PathLike, metrics_path: str | os.PathLike,
                 samples: Sequence[dict[str, Any]], *, plot: bool, html: bool,
                 title: str) -> None:
    """A run's report in ``output_dir``: ``learning_curves.png`` from ``metrics_path``
    (with ``plot``) and ``samples.html`` (with ``html``, if there are ``samples``). An
    ``OSError`` (e.g. a full disk) names the file it could not write."""
    target = os.path.join(output_dir, "learning_curves.png")
    try:
        if plot and os.path.exists(metrics_path):
            plot_learning_curves(metrics_path, target)
        target = os.path.join(output_dir, "samples.html")
        if html and samples:
            write_samples_html(samples, target, title=title)
    except OSError as err:  # e.g. a full disk: say which file
        raise OSError(err.errno, f"{target}: cannot write the report "
                                 f"({err.strerror or err})") from err


__all__ = ["plot_learning_curves", "write_report", "write_samples_html"]
