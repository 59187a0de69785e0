"""Which tokens does PGPO's gate boost? docs/evidence.md (2026-12-07, the language-heavy cell).

Loads a checkpoint into the trainer, draws rollout batches as RL does (``trainer.collect``:
the training prompts, the run's temperature, dynamic sampling), computes every response
token's visual dependency ``S`` (exact KL, Eq. 1) and PGPO's weights ``w~`` with the run's
own gate (``algo.pgpo``: tau, beta, Eq. 7), and sorts the tokens into classes:

* ``count``: a digit that states a count read off the image (``perception_token_mask``);
* ``filler``: inside one of the chain task's pure-language statements ("Okay.", ...);
* ``colour``: a colour name;
* ``sum``: the arithmetic statement (``So 3+1=4.``; from the text's stated counts);
* ``answer``: ``\\boxed{...}``;
* ``other``: everything else (openers, the facts' phrasing and punctuation, tags).

Per class: tokens per response, mean ``S``, the share of the class's tokens boosted
(``w~ > 1``), boosted tokens per response, the class's share of the weight mass
``sum w~`` (which Eq. 7 keeps equal to the response length) and its most often boosted
tokens; and twelve responses with their boosted tokens in [brackets]. Writes ``NAME.json``.

    python docs/evidence/2026-12-07_gate_tokens/gate_tokens.py NAME CHECKPOINT [--batches K] \\
        [SECTION.FIELD=VALUE ...]   # the run's overrides, e.g. data.chain_filler=8
"""
import argparse
import collections
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(_ROOT), str(_ROOT / "adapters")]

import pgpo_core
from reference_impl.config import load_config
from reference_impl.data.chains import _FILLERS, perception_token_mask
from reference_impl.data.synthetic import COLORS
from reference_impl.loop.trainer import Trainer
from reference_impl.policy.distributed import init_distributed, shutdown

CLASSES = ("count", "filler", "colour", "sum", "answer", "other")


def classify(tokens: list[str], colours: list[str]) -> list[str]:
    """One class per decoded token, by the characters it covers in the response text."""
    text = "".join(tokens)
    kind = ["other"] * len(text)
    for pattern, name in ((r"[^.>]*\d\s*[-+*]\s*\d[^.]*=\s*-?\d+\.?", "sum"),
                          (r"\\boxed\{[^}]*\}?", "answer")):
        for m in re.finditer(pattern, text):
            kind[m.start():m.end()] = [name] * (m.end() - m.start())
    for phrase in _FILLERS:
        for m in re.finditer(re.escape(phrase), text):
            kind[m.start():m.end()] = ["filler"] * (m.end() - m.start())
    for c in colours:
        for m in re.finditer(rf"\b{re.escape(c)}\b", text):
            kind[m.start():m.end()] = ["colour"] * (m.end() - m.start())
    out, pos = [], 0
    for tok, is_count in zip(tokens, perception_token_mask(tokens, colours)):
        span = kind[pos:pos + len(tok)]
        pos += len(tok)
        if is_count:
            out.append("count")
        elif tok.strip() and span:  # the class most of its visible characters have
            seen = [k for k, ch in zip(span, tok) if not ch.isspace()] or span
            out.append(max(set(seen), key=seen.count))
        else:
            out.append(span[0] if span else "other")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("checkpoint")
    parser.add_argument("--batches", type=int, default=6)
    args, overrides = parser.parse_known_args()
    env = init_distributed(device="auto", backend="auto", timeout_minutes=30)
    cfg = load_config(overrides + ["algo.name=pgpo", f"checkpoint.resume={args.checkpoint}",
                                   "model.sft_warmup_steps=0", "logging.progress_bar=false"])
    trainer = Trainer(cfg, env)
    trainer.resume()
    torch.manual_seed(cfg.train.seed)
    hp = trainer.pgpo.replace(estimator="exact")
    tok = trainer.processor.tokenizer
    rows: dict[str, dict[str, list[float]]] = {c: {"S": [], "boosted": [], "w": []}
                                                 for c in CLASSES}
    n_resp, lengths, max_w = 0, [], []
    examples: list[str] = []  # the first responses, boosted tokens in [brackets]
    boosted_strings: dict[str, collections.Counter] = {c: collections.Counter() for c in CLASSES}
    try:
        for _ in range(args.batches):
            got = trainer.collect()
            batch = got.batch
            if batch is None:
                continue
            with torch.no_grad():
                parts = [trainer.pgpo_advantages(batch.select(list(range(s, min(s + 8, batch.size)))),
                                                 got.advantages[s:s + 8], hp)
                         for s in range(0, batch.size, 8)]
            dep = torch.cat([p.dependency for p in parts])
            w = pgpo_core.token_weights(dep, batch.response_mask, **hp.weight_kwargs())
            for j in range(batch.size):
                m = batch.response_mask[j]
                ids = batch.responses[j][m].tolist()
                tokens = [tok.decode([i]) for i in ids]
                kinds = classify(tokens, list(COLORS))
                s, wj = dep[j][m].tolist(), w[j][m].tolist()
                n_resp += 1
                if len(examples) < 12 and j % 4 == 0:  # one response per prompt
                    examples.append("".join(f"[{t}]" if wv > 1 else t
                                            for t, wv in zip(tokens, wj)))
                lengths.append(len(tokens))
                max_w.append(max(wj))
                for k, sv, wv, t in zip(kinds, s, wj, tokens):
                    if wv > 1:
                        boosted_strings[k][t] += 1
                    rows[k]["S"].append(sv)
                    rows[k]["boosted"].append(float(wv > 1))
                    rows[k]["w"].append(wv)
    finally:
        shutdown()
    total_w = sum(sum(r["w"]) for r in rows.values())
    out = {"checkpoint": args.checkpoint, "overrides": overrides, "responses": n_resp,
           "mean_length": float(np.mean(lengths)), "mean_max_weight": float(np.mean(max_w)),
           "tau": hp.tau, "beta": hp.beta, "classes": {}, "examples": examples}
    for c, r in rows.items():
        n = len(r["S"])
        out["classes"][c] = {
            "tokens_per_response": n / max(n_resp, 1),
            "mean_S": float(np.mean(r["S"])) if n else None,
            "boosted_share": float(np.mean(r["boosted"])) if n else None,
            "boosted_per_response": sum(r["boosted"]) / max(n_resp, 1),
            "weight_mass_share": sum(r["w"]) / total_w if total_w else None,
            "most_boosted_tokens": boosted_strings[c].most_common(12)}
    print(json.dumps(out, indent=1))
    Path(__file__).with_name(f"{args.name}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
