"""The chain task: balanced answers, text alone at chance, facts drawn on the image,
noisy warm-up references, and the warm-up target of every data source."""

import collections
import math

import numpy as np
import pytest
from scipy import stats

from reference_impl.data.chains import ChainCountTask, chain_facts, perception_accuracy
from reference_impl.data.examples import Example
from reference_impl.data.synthetic import COLORS
from reference_impl.data.rewards import verifiable_reward
from reference_impl.loop.warmup import FALLBACK_REASONING, warmup_target


def test_answers_are_balanced():
    task = ChainCountTask(0, facts=2, max_count=4)
    counts = collections.Counter(task[i].answer for i in range(3500))
    assert sorted(counts) == sorted(task.answer_set) == ["2", "3", "4", "5", "6", "7", "8"]
    # Uniform over 7 answers: a chi-square test does not reject at 0.1 %.
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


@pytest.mark.parametrize("facts,max_count", [(2, 4), (3, 3)])
def test_text_only_policy_is_at_chance(facts, max_count):
    """The best policy that sees only the question (its majority answer on 3,000 train
    questions) answers 3,000 held-out questions at chance, 1 / |answers|."""
    train = ChainCountTask(1, facts=facts, max_count=max_count)
    heldout = train.heldout(3000)
    by_question = collections.defaultdict(collections.Counter)
    for i in range(3000):
        e = train[i]
        by_question[e.question][e.answer] += 1
    majority = {q: c.most_common(1)[0][0] for q, c in by_question.items()}
    fallback = collections.Counter(train[i].answer for i in range(3000)).most_common(1)[0][0]
    hits = [majority.get(e.question, fallback) == e.answer for e in heldout]
    chance = 1 / len(train.answer_set)
    sigma = math.sqrt(chance * (1 - chance) / len(hits))
    assert abs(np.mean(hits) - chance) < 4 * sigma


def test_image_shows_the_counts():
    """Count the coloured squares in the pixels: they are the example's facts, and the
    answer is their sum."""
    task = ChainCountTask(3, facts=3, max_count=3, distractors=2, image_size=112)
    for i in range(20):
        e = task[i]
        pixels = np.asarray(e.image)
        cell = 112 / task.grid
        centres = [(int((r + 0.5) * cell), int((c + 0.5) * cell))
                   for r in range(task.grid) for c in range(task.grid)]
        seen = collections.Counter(tuple(pixels[y, x]) for y, x in centres)
        for colour, n in e.facts.items():
            assert seen[COLORS[colour]] == n
        assert int(e.answer) == sum(e.facts.values())
        assert all(colour in e.question for colour in e.facts)


def test_examples_are_a_pure_function_of_seed_split_index():
    a, b = ChainCountTask(5), ChainCountTask(5)
    assert a[17].reference == b[17].reference and a[17].facts == b[17].facts
    assert np.array_equal(np.asarray(a[17].image), np.asarray(b[17].image))
    assert a.heldout(4)[0].id != a[0].id


def test_clean_reference_chain_is_correct_and_well_formed():
    task = ChainCountTask(0, warmup_noise=0.0)
    for i in range(200):
        e = task[i]
        assert perception_accuracy(e.reference, e.facts) == 1.0
        assert verifiable_reward(e.reference, e.answer).reward == pytest.approx(1.0)


def test_noisy_references_are_wrong_at_the_set_rate_and_stay_consistent():
    task = ChainCountTask(0, warmup_noise=0.3)
    wrong, n = 0, 0
    for i in range(1000):
        e = task[i]
        stated = chain_facts(e.reference, list(e.facts))
        wrong += sum(stated[c] != e.facts[c] for c in e.facts)
        n += len(e.facts)
        # The arithmetic follows the stated counts, right or wrong.
        assert e.reference.endswith(f"\\boxed{{{sum(stated.values())}}}")
    rate = wrong / n
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)


def test_wording_varies():
    """Language tokens keep entropy: openers, phrasings and orders all occur."""
    task = ChainCountTask(0, warmup_noise=0.0)
    refs = [task[i].reference for i in range(400)]
    assert len({r.split("</think>")[0].split(".")[0] for r in refs}) >= 4
    assert any(" So " in r for r in refs) and any("Total " in r for r in refs)


def test_filler_adds_only_language_and_leaves_everything_else_as_it_was():
    """``filler`` (data.chain_filler) adds that many statements of pure language to each
    reference chain, at places that vary, and changes nothing else: the image, question,
    answer, facts and every stated count are those of ``filler=0``, the default."""
    from reference_impl.data.chains import _FILLERS

    plain, filled = ChainCountTask(3), ChainCountTask(3, filler=4)
    places = set()
    for i in range(200):
        a, b = plain[i], filled[i]
        assert (a.question, a.answer, a.facts) == (b.question, b.answer, b.facts)
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert chain_facts(b.reference, list(b.facts)) == chain_facts(a.reference, list(a.facts))
        assert verifiable_reward(b.reference, b.answer).reward == \
            verifiable_reward(a.reference, a.answer).reward
        found = [f for f in _FILLERS for _ in range(b.reference.count(f))]
        assert len(found) == 4
        removed = b.reference
        for f in found:
            removed = removed.replace(f + " ", "", 1)
        assert removed == a.reference
        first_count = next(i for i, ch in enumerate(b.reference) if ch.isdigit())
        places.add(min(b.reference.index(f) for f in found) < first_count)
    assert places == {True, False}  # before the first fact and after it
    assert ChainCountTask(3, filler=2).heldout(4).filler == 2


def test_chain_facts_and_perception_accuracy_by_hand():
    text = "<think>I see red: 3. the blue count is 1. So 3+1=4.</think> \\boxed{4}"
    assert chain_facts(text, ["red", "blue", "green"]) == {"red": 3, "blue": 1, "green": None}
    assert perception_accuracy(text, {"red": 3, "blue": 2}) == 0.5
    assert perception_accuracy("no chain at all", {"red": 3}) == 0.0


@pytest.mark.parametrize("kwargs,field", [
    (dict(facts=1), "facts"), (dict(facts=5), "facts"), (dict(max_count=1), "max_count"),
    (dict(warmup_noise=1.0), "warmup_noise"), (dict(split="test"), "split"),
    (dict(image_size=20), "image_size"), (dict(distractors=-1), "distractors"),
    (dict(filler=-1), "filler"), (dict(filler=True), "filler"),
])
def test_bad_settings_name_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ChainCountTask(0, **kwargs)


def _example(reference):
    from PIL import Image
    return Example(image=Image.new("RGB", (28, 28)), question="q", answer="7", task="t",
                   id="x", reference=reference)


def test_warmup_target_for_every_kind_of_reference():
    full = "<think>a+b</think> \\boxed{7}"
    assert warmup_target(_example(full)) == full
    assert warmup_target(_example("  3 plus 4  ")) == "<think>3 plus 4</think> \\boxed{7}"
    assert warmup_target(_example(None)) == f"<think>{FALLBACK_REASONING}</think> \\boxed{{7}}"
