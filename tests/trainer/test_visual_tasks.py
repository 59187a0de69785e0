"""The spatial, row-order, bar, region and bar-length tasks
(reference_impl/data/visual_tasks.py): balanced answers, text alone at chance, the facts
drawn on the image, noisy consistent references, and the export to JSONL + PNG that the
file loader reads back as the same examples."""

import collections
import json
import math

import numpy as np
import pytest
from scipy import stats

from reference_impl.data.chains import ChainCountTask, chain_facts, perception_accuracy
from reference_impl.data.export import export_jsonl, main
from reference_impl.data.rewards import verifiable_reward
from reference_impl.data.sources import LocalFileDataset
from reference_impl.data.synthetic import COLORS, SyntheticVisualTask
from reference_impl.data.visual_tasks import (
    TASKS,
    BarDifferenceTask,
    BarLengthTask,
    GridPlaceTask,
    OneBarLengthTask,
    RegionCountTask,
    RowOrderTask,
)


@pytest.mark.parametrize("kind,kwargs", [("spatial", {}), ("spatial", dict(grid=4)),
                                         ("rows", {}), ("rows", dict(grid=3)),
                                         ("bars", {}), ("bars", dict(max_height=7)),
                                         ("region", {}),
                                         ("region", dict(axis="cols", max_count=3)),
                                         ("lengths", {}), ("lengths", dict(max_length=6)),
                                         ("length", {}), ("length", dict(max_length=6))])
def test_answers_are_balanced(kind, kwargs):
    task = TASKS[kind](0, **kwargs)
    n = 500 * len(task.answer_set)
    counts = collections.Counter(task[i].answer for i in range(n))
    assert sorted(counts, key=int) == list(task.answer_set)
    # Uniform over the answer set: a chi-square test does not reject at 0.1 %.
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_text_only_policy_is_at_chance(kind):
    """The best policy that sees only the question (its majority answer on 3,000 train
    questions) answers 3,000 held-out questions at chance, 1 / |answers|."""
    train = TASKS[kind](1)
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


@pytest.mark.parametrize("kind", ["rows", "bars", "lengths"])
def test_the_question_does_not_tell_which_named_thing_is_larger(kind):
    """The signed difference: the first named thing is the larger one half of the time, and
    its value has the same distribution as the second's (so a policy that reads only the
    question cannot state either fact better than the common prior)."""
    task = TASKS[kind](2)
    pairs = [list(task[i].facts.values()) for i in range(4000)]
    first_larger = np.mean([a > b for a, b in pairs])
    assert abs(first_larger - 0.5) < 4 * math.sqrt(0.25 / len(pairs))
    values = sorted({v for pair in pairs for v in pair})
    table = [[sum(pair[k] == v for pair in pairs) for v in values] for k in (0, 1)]
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_spatial_image_shows_the_square_in_the_answer_cell():
    """The asked colour fills exactly the answer's cell centre; its row and column are
    the facts; other cells hold other colours or nothing."""
    for grid in (3, 4):
        task = GridPlaceTask(2, grid=grid)
        for i in range(30):
            e = task[i]
            pixels = np.asarray(e.image)
            colour = next(c for c in COLORS if f"the {c} square" in e.question)
            side = task.image_size / grid
            hits = [r * grid + k + 1 for r in range(grid) for k in range(grid)
                    if tuple(pixels[int((r + 0.5) * side), int((k + 0.5) * side)])
                    == COLORS[colour]]
            assert hits == [int(e.answer)]
            assert e.facts == {"row": (hits[0] - 1) // grid + 1,
                               "column": (hits[0] - 1) % grid + 1}


@pytest.mark.parametrize("grid", [3, 4])
def test_rows_image_has_one_square_per_row_at_the_stated_rows(grid):
    """Find every square in the pixels: one per row of the ``grid x grid`` lattice, each of
    its own colour and inside one cell; the named squares sit in the rows of the facts, and
    the answer is how many rows higher the first is (negative: lower). At 112 px and
    ``grid=4`` a square lies inside one 28-px image token."""
    task = RowOrderTask(6, grid=grid)
    s = task.image_size
    cell = s / grid
    for i in range(30):
        e = task[i]
        pixels = np.asarray(e.image)
        rows = {}
        for colour, rgb in COLORS.items():
            ys, xs = np.nonzero(np.all(pixels == rgb, axis=-1))
            if len(ys) == 0:
                continue
            assert int(ys.min() // cell) == int(ys.max() // cell)  # one cell
            assert int(xs.min() // cell) == int(xs.max() // cell)
            if grid == 4 and s == 112:
                assert int(ys.min() // 28) == int(ys.max() // 28)
                assert int(xs.min() // 28) == int(xs.max() // 28)
            rows[colour] = int(ys.min() // cell) + 1
        assert sorted(rows.values()) == list(range(1, grid + 1))
        first, second = list(e.facts)
        assert e.question.index(f"the {first} square") < e.question.index(f"the {second} square")
        assert e.facts == {first: rows[first], second: rows[second]}
        assert int(e.answer) == rows[second] - rows[first] != 0


@pytest.mark.parametrize("max_height", [4, 5])
def test_bar_image_shows_the_heights(max_height):
    """Measure each named bar in the pixels: its coloured area is ``height`` cells of the
    ``max_height x max_height`` lattice tall, from the bottom edge, inside one column. At
    112 px and ``max_height=4`` a cell is one 28-px image token of Qwen2.5-VL, so a bar
    covers exactly ``height`` tokens. The answer is the difference of the facts."""
    task = BarDifferenceTask(3, max_height=max_height)
    s = task.image_size
    cell = s / max_height
    for i in range(30):
        e = task[i]
        pixels = np.asarray(e.image)
        columns = []
        for colour, height in e.facts.items():
            ys, xs = np.nonzero(np.all(pixels == COLORS[colour], axis=-1))
            assert ys.max() == s - 1 and round((s - ys.min()) / cell) == height
            assert int(xs.min() // cell) == int(xs.max() // cell)  # one column
            columns.append(int(xs.min() // cell))
            if max_height == 4 and s == 112:  # one token column, ``height`` token rows
                assert ys.min() == s - 28 * height and xs.max() - xs.min() < 28
        assert len(set(columns)) == len(columns)
        first, second = list(e.facts)
        assert e.question.index(first) < e.question.index(second)
        assert int(e.answer) == e.facts[first] - e.facts[second] != 0


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_clean_references_are_correct_and_noisy_ones_wrong_at_the_set_rate(kind):
    clean = TASKS[kind](0, warmup_noise=0.0)
    for i in range(200):
        e = clean[i]
        assert perception_accuracy(e.reference, e.facts) == 1.0
        assert verifiable_reward(e.reference, e.answer).reward == pytest.approx(1.0)
    noisy = TASKS[kind](0, warmup_noise=0.3)
    wrong, n = 0, 0
    for i in range(1000):
        e = noisy[i]
        stated = chain_facts(e.reference, list(e.facts))
        assert None not in stated.values()
        wrong += sum(stated[c] != e.facts[c] for c in e.facts)
        n += len(e.facts)
    assert abs(wrong / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)


def test_examples_are_a_pure_function_of_seed_split_index():
    for cls in TASKS.values():
        a, b = cls(5), cls(5)
        assert a[17].reference == b[17].reference and a[17].facts == b[17].facts
        assert np.array_equal(np.asarray(a[17].image), np.asarray(b[17].image))
        assert a.heldout(4)[0].id != a[0].id


@pytest.mark.parametrize("cls,kwargs,field", [
    (GridPlaceTask, dict(grid=1), "grid"), (GridPlaceTask, dict(grid=6), "grid"),
    (GridPlaceTask, dict(distractors=0), "distractors"),
    (GridPlaceTask, dict(grid=2, distractors=4), "distractors"),
    (BarDifferenceTask, dict(bars=1), "bars"), (BarDifferenceTask, dict(bars=5), "bars"),
    (BarDifferenceTask, dict(max_height=2), "max_height"),
    (BarDifferenceTask, dict(bars=4, max_height=3), "bars"),
    (RowOrderTask, dict(grid=2), "grid"), (RowOrderTask, dict(grid=5), "grid"),
    (GridPlaceTask, dict(warmup_noise=1.0), "warmup_noise"),
    (BarDifferenceTask, dict(split="test"), "split"),
    (BarDifferenceTask, dict(image_size=40), "image_size"),
    (BarDifferenceTask, dict(opening=-1), "opening"),
    (BarDifferenceTask, dict(opening=8, split="heldout"), "opening"),
    (RegionCountTask, dict(grid=3), "grid"), (RegionCountTask, dict(grid=10), "grid"),
    (RegionCountTask, dict(max_count=9), "max_count"),
    (RegionCountTask, dict(max_count=1), "max_count"),
    (RegionCountTask, dict(axis="diagonal"), "axis"),
    (RegionCountTask, dict(opening=4, split="heldout"), "opening"),
    (BarLengthTask, dict(max_length=2), "max_length"),
    (BarLengthTask, dict(max_length=5), "max_length"),
    (BarLengthTask, dict(max_length=10), "max_length"),
    (BarLengthTask, dict(opening=3, split="heldout"), "opening"),
    (OneBarLengthTask, dict(max_length=7), "max_length"),
    (OneBarLengthTask, dict(opening=3, split="heldout"), "opening"),
])
def test_bad_settings_name_the_argument(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(0, **kwargs)


def test_the_bars_opening_asks_every_bar_total_first_then_the_task_from_one_stream():
    task, plain = BarDifferenceTask(3, opening=10), BarDifferenceTask(3)
    first = task.sample(6) + task.sample(6)  # the switch falls inside the second draw
    for i, e in enumerate(first):
        same = plain[i]
        assert np.array_equal(np.asarray(e.image), np.asarray(same.image))
        if i < 10:  # every bar's height, added: the answer is the picture's coloured area
            assert len(e.facts) == 3 and set(same.facts) < set(e.facts)
            assert {c: e.facts[c] for c in same.facts} == same.facts
            columns = (np.asarray(e.image)[:, :, 0] < 250) | (np.asarray(e.image)[:, :, 2] < 250)
            coloured = sum(1 for r in range(4) for k in range(4)  # 28-px cells with a bar
                           if columns[r * 28 + 14, k * 28 + 14])
            assert e.answer == str(sum(e.facts.values())) == str(coloured)
            assert e.id == same.id + "-sum" and "together" in e.question
            assert all(c in e.question for c in e.facts)
            stated = chain_facts(e.reference, list(e.facts))
            assert e.reference.endswith(f"\\boxed{{{sum(stated.values())}}}")
        else:
            assert (e.question, e.answer, e.reference, e.facts, e.id) \
                == (same.question, same.answer, same.reference, same.facts, same.id)
    assert task[3].question == plain[3].question  # indexing never opens
    assert task.heldout(4)[0].question == plain.heldout(4)[0].question


def test_the_bars_opening_resumes_where_the_stream_stopped():
    whole = BarDifferenceTask(1, opening=5)
    want = [e.question for e in whole.sample(8)]
    resumed = BarDifferenceTask(1, opening=5)
    resumed.load_state_dict({"cursor": 3})
    assert [e.question for e in resumed.sample(5)] == want[3:]


def test_clean_opening_references_are_correct():
    task = BarDifferenceTask(0, warmup_noise=0.0, opening=200)
    for e in task.sample(200):
        assert perception_accuracy(e.reference, e.facts) == 1.0
        assert verifiable_reward(e.reference, e.answer).reward == pytest.approx(1.0)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("kind", ["bars", "region", "lengths", "length"])
def test_opening_steps_count_every_process_draw(world, kind):
    from reference_impl.config import load_config
    from reference_impl.data.datasets import build_datasets

    cfg = load_config([f"data.synthetic_task={kind}", "data.opening_steps=3"],
                      check_environment=False)
    train, heldout = build_datasets(cfg, world_size=world)
    assert train.opening == 3 * 8 * 4 * world and getattr(heldout, "opening", 0) == 0


@pytest.mark.parametrize("task", [GridPlaceTask(4), RowOrderTask(4), BarDifferenceTask(4),
                                  RegionCountTask(4, opening=5), BarLengthTask(4),
                                  OneBarLengthTask(4, opening=3), ChainCountTask(4),
                                  SyntheticVisualTask(4, image_size=56)],
                         ids=["spatial", "rows", "bars", "region", "lengths", "length", "chain",
                              "simple"])
def test_export_then_file_loader_gives_the_same_examples(task, tmp_path):
    path = tmp_path / "data" / "export.jsonl"
    path.parent.mkdir()
    assert export_jsonl((task[i] for i in range(12)), path) == 12
    loaded = LocalFileDataset(path, shuffle=False)
    assert len(loaded) == 12 and loaded.skipped == {}
    for i in range(12):
        want, got = task[i], loaded[i]
        assert (got.question, got.answer, got.task, got.reference, got.facts, got.prompt) \
            == (want.question, want.answer, want.task, want.reference, want.facts, want.prompt)
        assert got.image.size == want.image.size
        np.testing.assert_array_equal(np.asarray(got.image), np.asarray(want.image))
    row = json.loads(path.read_text().splitlines()[0])
    assert row["images"] == ["export_images/000000.png"]


def test_export_command_line_writes_the_configured_task(tmp_path, capsys):
    out = tmp_path / "bars.jsonl"
    assert main([str(out), "--size", "5", "--heldout", "data.synthetic_task=bars",
                 "train.seed=3"]) == 0
    want = BarDifferenceTask(3).heldout(5)
    loaded = LocalFileDataset(out, shuffle=False)
    assert [e.question for e in loaded] == [want[i].question for i in range(5)]
    assert "wrote 5 bars examples" in capsys.readouterr().out
    with pytest.raises(ValueError, match="path"):
        export_jsonl([], tmp_path / "x.json")


@pytest.mark.parametrize("kind", ["bars", "region", "lengths", "length"])
def test_export_writes_the_opening_first_for_the_file_loader(tmp_path, kind):
    out = tmp_path / f"{kind}.jsonl"  # one warm-up step of 8 x 4 opening examples, then the task
    assert main([str(out), "--size", "40", f"data.synthetic_task={kind}", "train.seed=3",
                 "data.opening_steps=1"]) == 0
    loaded = LocalFileDataset(out, shuffle=False)
    opened, plain = TASKS[kind](3, opening=32), TASKS[kind](3)
    assert [e.question for e in loaded] == [opened.opening_example(i).question
                                            for i in range(32)] \
        + [plain[i].question for i in range(32, 40)]
    assert [e.facts for e in loaded][:2] == [opened.opening_example(i).facts for i in range(2)]


def test_a_malformed_facts_column_skips_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    export_jsonl((GridPlaceTask(0)[i] for i in range(3)), path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["facts"] = {"row": "two"}
    rows[2]["facts"] = None
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = LocalFileDataset(path, shuffle=False)
    assert loaded.skipped == {"unreadable_row": 1}
    assert [e.facts for e in loaded] == [GridPlaceTask(0)[0].facts, None]


def _best_guess_accuracy(table, n):
    """How often the likeliest answer of each row of ``table`` (what a model sees -> a
    Counter of the answers) is right, over ``n`` examples."""
    return sum(c.most_common(1)[0][1] for c in table.values()) / n


def _squares_by_half(image, grid=4):
    """Coloured 28-px cells (their centres) in the first and the second half of the rows
    and of the columns."""
    a = np.asarray(image).astype(int)
    cell = a.shape[0] // grid
    centre = [[a[r * cell + cell // 2, c * cell + cell // 2] for c in range(grid)]
              for r in range(grid)]
    filled = [[int(np.ptp(px) > 40) for px in row] for row in centre]  # not white, not grey
    rows = (sum(map(sum, filled[:grid // 2])), sum(map(sum, filled[grid // 2:])))
    cols = (sum(row[c] for row in filled for c in range(grid // 2)),
            sum(row[c] for row in filled for c in range(grid // 2, grid)))
    return rows, cols


@pytest.mark.parametrize("axis", ["rows", "cols"])
def test_region_image_holds_each_halfs_count_inside_a_frame(axis):
    task = RegionCountTask(6, axis=axis)
    first, second = RegionCountTask.HALVES[axis]
    for i in range(60):
        e = task[i]
        rows, cols = _squares_by_half(e.image)
        assert (rows if axis == "rows" else cols) == (e.facts[first], e.facts[second])
        asked = first if f"the {first} half" in e.question else second
        assert f"the {asked} half" in e.question and e.answer == str(e.facts[asked])
        a = np.asarray(e.image)
        assert (a[:3] == 0).all() and (a[:, -3:] == 0).all()  # the black frame
        assert a[5:-5, 5:-5].max() == 255  # a white background inside it


def test_a_count_of_all_the_squares_does_not_answer_a_half():
    """The total predicts a half's count only partly: the best guess from the total alone
    (the likeliest half count given it) is right about 7 times in 16."""
    task = RegionCountTask(4)
    pairs = [(sum(task[i].facts.values()), task[i].answer) for i in range(4000)]
    by_total = collections.defaultdict(collections.Counter)
    for total, answer in pairs:
        by_total[total][answer] += 1
    best = _best_guess_accuracy(by_total, len(pairs))
    assert 0.38 < best < 0.50


def _bars_by_row(image, cells):
    """Each coloured bar in the pixels: ``{colour: (lattice row, length in cells, x range)}``
    (a colour of :data:`COLORS` that fills part of exactly one row of the lattice)."""
    a = np.asarray(image)
    cell = a.shape[0] / cells
    found = {}
    for colour, rgb in COLORS.items():
        ys, xs = np.nonzero(np.all(a == rgb, axis=-1))
        if len(ys):
            assert int(ys.min() // cell) == int(ys.max() // cell)  # inside one row
            found[colour] = (int(ys.min() // cell), round((xs.max() + 1) / cell),
                             (int(xs.min()), int(xs.max())))
    return found


@pytest.mark.parametrize("max_length", [4, 6])
def test_lengths_image_shows_a_top_and_a_bottom_bar_of_the_stated_lengths(max_length):
    """Measure both bars in the pixels: two colours, one bar in a row of the top half and
    one in the bottom half, each from the left edge (under the frame) ``length`` cells
    long; at 112 px and ``max_length=4`` exactly ``length`` 28-px image tokens. The answer
    is the first named bar's length minus the second's; the black frame surrounds it."""
    task = BarLengthTask(5, max_length=max_length)
    half = max_length // 2
    for i in range(60):
        e = task[i]
        bars = _bars_by_row(e.image, max_length)
        assert len(bars) == 2
        (top_row, top, top_x), (bottom_row, bottom, bottom_x) = sorted(bars.values())
        assert top_row < half <= bottom_row
        assert e.facts == {"top": top, "bottom": bottom} or \
            e.facts == {"bottom": bottom, "top": top}
        first, second = list(e.facts)
        assert f"the {first} bar than the {second} bar" in e.question
        assert int(e.answer) == e.facts[first] - e.facts[second] != 0
        assert top_x[0] == bottom_x[0] == BarLengthTask.FRAME  # the frame covers x < 3
        if max_length == 4:  # the frame also covers the last 3 px of a full-length bar
            right = 112 - BarLengthTask.FRAME - 1
            assert (top_x[1], bottom_x[1]) == (min(28 * top - 1, right),
                                               min(28 * bottom - 1, right))
        a = np.asarray(e.image)
        assert (a[:3] == 0).all() and (a[:, -3:] == 0).all()


def test_lengths_places_are_not_told_by_the_question_or_the_colours():
    """Which bar is named first, the rows inside each half, and the colours are drawn
    independently of the lengths: the first named is the top bar half of the time, each
    row of a half carries a bar equally often, and the top bar's colour says nothing about
    its length (chi-square, not rejected at 0.1 %)."""
    task = BarLengthTask(8)
    examples = [task[i] for i in range(3000)]
    top_first = np.mean([list(e.facts)[0] == "top" for e in examples])
    assert abs(top_first - 0.5) < 4 * math.sqrt(0.25 / len(examples))
    rows = collections.Counter()
    by_colour = collections.defaultdict(collections.Counter)
    for e in examples:
        bars = sorted(_bars_by_row(e.image, 4).items(), key=lambda kv: kv[1][0])
        rows.update(r for _, (r, _, _) in bars)
        by_colour[bars[0][0]][e.facts["top"]] += 1
    assert stats.chisquare([rows[r] for r in range(4)]).pvalue > 1e-3
    table = [[c[n] for n in range(1, 5)] for c in by_colour.values()]
    assert stats.chi2_contingency(table).pvalue > 1e-3


def _total_in_pixels(kind, image):
    """What the opening's answer is in the picture: the squares of both halves (region), the
    two bars' lengths in cells (lengths, length)."""
    if kind == "region":
        return sum(_squares_by_half(image)[0])
    return sum(length for _, length, _ in _bars_by_row(image, 4).values())


@pytest.mark.parametrize("kind,question", [
    ("region", "How many squares are in the picture? Answer with a number."),
    ("lengths", "How long are the two bars together? Answer with a number."),
    ("length", "How long are the two bars together? Answer with a number.")])
def test_the_opening_asks_the_total_first_then_the_task(kind, question):
    task, plain = TASKS[kind](3, opening=7), TASKS[kind](3)
    for i, e in enumerate(task.sample(12)):
        same = plain[i]
        assert np.array_equal(np.asarray(e.image), np.asarray(same.image))
        assert e.facts == same.facts
        if i < 7:
            assert e.answer == str(sum(e.facts.values())) == str(_total_in_pixels(kind, e.image))
            assert e.question == question
            assert e.id == same.id + "-total"
        else:
            assert (e.question, e.answer, e.reference, e.id) == \
                (same.question, same.answer, same.reference, same.id)
    clean = TASKS[kind](0, warmup_noise=0.0, opening=50)
    for e in clean.sample(50):
        assert perception_accuracy(e.reference, e.facts) == 1.0
        assert verifiable_reward(e.reference, e.answer).reward == pytest.approx(1.0)


def test_what_a_model_that_does_not_know_which_bar_is_where_can_answer():
    """Two ceilings for a model that does not read both bars by place (the registered
    thresholds of docs/protocol_lengths_2026-12-07.md), computed as the best answer given
    what it sees on 20,000 pictures: both lengths without their places (the magnitude of
    the difference, its sign a coin) allow exactly half; the total length alone almost as
    much, 0.45 (not 1/6: with two bars of 1-4 a total leaves at most two magnitudes, and
    mostly one). Above 0.5 a model reads which bar is where."""
    task = BarLengthTask(0)
    total = collections.defaultdict(collections.Counter)
    unplaced = collections.defaultdict(collections.Counter)
    for i in range(20_000):
        e = task[i]
        a, b = e.facts.values()
        total[(list(e.facts)[0], a + b)][e.answer] += 1
        unplaced[(list(e.facts)[0], min(a, b), max(a, b))][e.answer] += 1

    assert 0.43 < _best_guess_accuracy(total, 20_000) < 0.47
    assert abs(_best_guess_accuracy(unplaced, 20_000) - 0.5) < 0.01


@pytest.mark.parametrize("max_length", [4, 6])
def test_one_bar_length_image_and_answer(max_length):
    """The chart of :class:`BarLengthTask` (measured the same way), the asked bar named in
    the question, its length the answer; the last step of a reference names the asked bar
    without a fact phrase, so only the two stated lengths parse as facts."""
    task = OneBarLengthTask(5, max_length=max_length)
    for i in range(60):
        e = task[i]
        bars = _bars_by_row(e.image, max_length)
        (top_row, top, _), (bottom_row, bottom, _) = sorted(bars.values())
        assert top_row < max_length // 2 <= bottom_row
        assert e.facts == {"top": top, "bottom": bottom}
        asked = "top" if "the top bar" in e.question else "bottom"
        assert e.question == f"How long is the {asked} bar? Answer with a number."
        assert e.answer == str(e.facts[asked])
        last = e.reference.split(".")[-2].lower()
        assert f"the {asked}" in last and " bar" not in last
        stated = chain_facts(e.reference, ["top", "bottom"])
        assert e.reference.endswith(f"\\boxed{{{stated[asked]}}}")


def test_one_bar_length_total_alone_is_right_at_most_7_in_16():
    """Independent lengths: the total leaves each length uncertain, as in the region task
    (the best answer given the total and which bar is asked: 7/16 = 0.4375 exactly; on
    20,000 pictures within sampling error), and the asked place is independent of the
    lengths."""
    task = OneBarLengthTask(0)
    by_total = collections.defaultdict(collections.Counter)
    asked_top = 0
    for i in range(20_000):
        e = task[i]
        top = "the top bar" in e.question
        asked_top += top
        by_total[(top, sum(e.facts.values()))][e.answer] += 1
    best = _best_guess_accuracy(by_total, 20_000)
    assert abs(best - 7 / 16) < 4 * math.sqrt(0.25 / 20_000)
    assert abs(asked_top / 20_000 - 0.5) < 4 * math.sqrt(0.25 / 20_000)
