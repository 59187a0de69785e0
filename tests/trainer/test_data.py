"""The simple synthetic task (reference_impl/data/synthetic.py), prompts (examples.py) and the local JSONL/Parquet loader (sources.py)."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from reference_impl.data.examples import INSTRUCTION, Example, make_prompt
from reference_impl.data.sources import LocalFileDataset, strip_image_placeholders
from reference_impl.data.synthetic import ANSWER_SETS, COLORS, TASKS, SyntheticVisualTask

# --- synthetic task: determinism, shapes, splits ---------------------------------------


def _pixels(example: Example) -> np.ndarray:
    return np.asarray(example.image)


def test_examples_are_a_pure_function_of_seed_split_and_index():
    a, b = SyntheticVisualTask(7), SyntheticVisualTask(7)
    for i in (0, 1, 2, 3, 101, 99_999):
        ea, eb = a[i], b[i]
        assert (ea.question, ea.answer, ea.task, ea.id) == (eb.question, eb.answer, eb.task, eb.id)
        np.testing.assert_array_equal(_pixels(ea), _pixels(eb))
    # Reading out of order gives the same example as reading in order.
    np.testing.assert_array_equal(_pixels(SyntheticVisualTask(7)[101]), _pixels(a[101]))
    other = SyntheticVisualTask(8)
    assert any(not np.array_equal(_pixels(a[i]), _pixels(other[i])) for i in range(8))


@pytest.mark.parametrize("image_size", [28, 56, 84])
def test_images_are_small_rgb_squares(image_size):
    task = SyntheticVisualTask(0, image_size=image_size)
    for i in range(8):
        ex = task[i]
        assert isinstance(ex, Example)
        assert ex.image.mode == "RGB" and ex.image.size == (image_size, image_size)
        assert ex.answer in ANSWER_SETS[ex.task]
        assert ex.prompt == f"{ex.question} {INSTRUCTION}"
        assert "<think>" in ex.prompt and "\\boxed{}" in ex.prompt


def test_task_mix_is_round_robin_over_the_requested_tasks():
    task = SyntheticVisualTask(0, tasks=("chart", "color"), size=10)
    assert [task[i].task for i in range(6)] == ["chart", "color"] * 3
    assert len(task) == 10 and task[-1].id == task[9].id
    with pytest.raises(IndexError, match="index"):
        task[10]


def test_train_and_heldout_splits_do_not_share_images():
    train = SyntheticVisualTask(3, size=400)
    held = train.heldout(size=200)
    assert held.split == "heldout" and len(held) == 200 and held.tasks == train.tasks
    train_images = {_pixels(e).tobytes() for e in train}
    held_images = {_pixels(e).tobytes() for e in held}
    assert not train_images & held_images
    assert len({e.id for e in train} | {e.id for e in held}) == 600


def test_sample_continues_where_it_stopped_and_resumes_from_state():
    task = SyntheticVisualTask(1, size=5)
    first = task.sample(3)
    assert [e.id for e in first] == [task[i].id for i in range(3)]
    state = task.state_dict()
    assert state == {"cursor": 3} and task.position == 3
    rest = task.sample(4)  # crosses the end of the first epoch
    assert [e.id for e in rest] == [task[i].id for i in (3, 4, 0, 1)]
    resumed = SyntheticVisualTask(1, size=5)
    resumed.load_state_dict(state)
    assert [e.id for e in resumed.sample(4)] == [e.id for e in rest]
    with pytest.raises(ValueError, match="state"):
        resumed.load_state_dict({"cursor": -1})
    with pytest.raises(ValueError, match="n"):
        task.sample(-1)


@pytest.mark.parametrize("kwargs, name", [
    (dict(seed=-1), "seed"),
    (dict(tasks=("count", "shape")), "tasks"),
    (dict(tasks=()), "tasks"),
    (dict(tasks=("count", "count")), "tasks"),
    (dict(image_size=20), "image_size"),
    (dict(split="test"), "split"),
    (dict(size=0), "size"),
])
def test_bad_arguments_are_rejected_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SyntheticVisualTask(**kwargs)
    with pytest.raises(TypeError, match="tasks"):
        SyntheticVisualTask(0, tasks="count")


# --- synthetic task: text-only priors are useless --------------------------------------


@pytest.fixture(scope="module")
def train_and_heldout():
    train = SyntheticVisualTask(0, size=4000)
    held = train.heldout(size=2000)
    return list(train), list(held)


def test_answers_are_near_uniform_for_each_task(train_and_heldout):
    train, _ = train_and_heldout
    for name in TASKS:
        answers = [e.answer for e in train if e.task == name]
        assert len(answers) == 1000
        counts = Counter(answers)
        assert set(counts) == set(ANSWER_SETS[name])
        # 1000 draws over 4 answers: expected 250 each, standard deviation ~13.7.
        for answer, count in counts.items():
            assert 200 <= count <= 300, (name, answer, count)


def test_question_text_does_not_determine_the_answer(train_and_heldout):
    train, held = train_and_heldout
    by_question: dict[str, Counter] = defaultdict(Counter)
    for e in train:
        by_question[(e.task, e.question)][e.answer] += 1
    for (name, question), counts in by_question.items():
        # Every question string is asked with every answer of its task.
        assert set(counts) == set(ANSWER_SETS[name]), question
    # The best text-only predictor (majority answer per question string, fitted on train)
    # is at chance level on the held-out split.
    majority = {q: c.most_common(1)[0][0] for q, c in by_question.items()}
    for name in TASKS:
        held_task = [e for e in held if e.task == name]
        hits = sum(majority.get((name, e.question)) == e.answer for e in held_task)
        chance = 1 / len(ANSWER_SETS[name])
        assert hits / len(held_task) < chance + 0.06, (name, hits / len(held_task))


# --- synthetic task: the answer is in the pixels (checked by an independent reading) ----


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as arrays of (row, col)."""
    seen = np.zeros_like(mask)
    out = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, pts = [start], []
        seen[start] = True
        while stack:
            r, c = stack.pop()
            pts.append((r, c))
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if (0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc]
                        and not seen[rr, cc]):
                    seen[rr, cc] = True
                    stack.append((rr, cc))
        out.append(np.array(pts))
    return out


def _read_answer(example: Example) -> str:
    px = _pixels(example).astype(int)
    ink = (px != 255).any(axis=-1)
    black = (px == 0).all(axis=-1)
    colour = ink & ~black
    if example.task == "count":
        return str(len(_components(ink)))
    if example.task == "color":
        values, counts = np.unique(px[ink], axis=0, return_counts=True)
        rgb = tuple(int(v) for v in values[np.argmax(counts)])
        return next(name for name, c in COLORS.items() if c == rgb)
    if example.task == "position":
        (mr, mc), (tr, tc) = np.argwhere(black).mean(0), np.argwhere(colour).mean(0)
        dr, dc = tr - mr, tc - mc
        if abs(dc) > abs(dr):
            return "left" if dc < 0 else "right"
        return "above" if dr < 0 else "below"
    if example.task == "chart":
        bars = _components(colour)
        assert len(bars) == 4
        bars.sort(key=lambda pts: pts[:, 1].min())
        heights = [np.ptp(pts[:, 0]) for pts in bars]
        return str(int(np.argmax(heights)) + 1)
    raise AssertionError(example.task)


@pytest.mark.parametrize("image_size", [28, 56, 84])
def test_the_answer_can_be_read_from_the_image(image_size):
    task = SyntheticVisualTask(5, image_size=image_size, size=240)
    wrong = [(e.id, e.answer, _read_answer(e)) for e in task if _read_answer(e) != e.answer]
    assert not wrong


def test_same_question_different_images_different_answers():
    task = SyntheticVisualTask(0, tasks=("chart",), size=64)
    assert len({e.question for e in task}) == 1
    assert {e.answer for e in task} == set(ANSWER_SETS["chart"])


# --- local files ------------------------------------------------------------------------


def _png(colour, size=(16, 14)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _garbage(n=64) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")


@pytest.fixture
def jsonl_dataset(tmp_path):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    (img_dir / "red.png").write_bytes(_png((255, 0, 0)))
    (img_dir / "green.jpg").write_bytes(_png((0, 255, 0)))  # PNG bytes, misleading suffix
    (img_dir / "broken.png").write_bytes(_garbage())
    (img_dir / "truncated.png").write_bytes(_png((0, 0, 255))[:40])
    abs_blue = tmp_path / "blue.png"
    abs_blue.write_bytes(_png((0, 0, 255), size=(15, 15)))
    rows = [
        {"problem": "<image>What colour?", "answer": "red", "images": ["imgs/red.png"]},
        {"question": "Colour of it?", "solution": "green", "image": "imgs/green.jpg"},
        {"prompt": "Absolute path <image> here.", "ground_truth": 3, "image": str(abs_blue)},
        {"problem": "hf dict", "answer": " 2.5 ", "images": [{"bytes": None,
                                                              "path": "imgs/red.png"}]},
        # Bad rows.
        {"problem": "no such file", "answer": "1", "images": ["imgs/nope.png"]},
        {"problem": "no image at all", "answer": "1"},
        {"problem": "empty image list", "answer": "1", "images": []},
        {"problem": "random bytes", "answer": "1", "images": ["imgs/broken.png"]},
        {"problem": "truncated png", "answer": "1", "images": ["imgs/truncated.png"]},
        {"problem": "empty answer", "answer": "  ", "images": ["imgs/red.png"]},
        {"problem": "null answer", "answer": None, "images": ["imgs/red.png"]},
        {"answer": "1", "images": ["imgs/red.png"]},
        {"problem": "<image>", "answer": "1", "images": ["imgs/red.png"]},
        "{not json",
        "[1, 2]",
    ]
    path = tmp_path / "train.jsonl"
    _write_jsonl(path, rows)
    return path


def test_jsonl_good_rows_are_loaded_and_bad_rows_counted(jsonl_dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="reference_impl.data.sources"):
        ds = LocalFileDataset(jsonl_dataset, shuffle=False)
    assert ds.skipped == {"invalid_json": 2, "missing_question": 2, "empty_answer": 2,
                          "missing_image": 3, "corrupt_image": 2}
    assert len(ds) == 4 and ds.rows_read == 13
    got = [(e.question, e.answer, e.task, e.id) for e in ds]
    assert got == [
        ("What colour?", "red", "local", "train.jsonl:0"),
        ("Colour of it?", "green", "local", "train.jsonl:1"),
        ("Absolute path here.", "3", "local", "train.jsonl:2"),
        ("hf dict", "2.5", "local", "train.jsonl:3"),
    ]
    colours = [(e.image.mode, e.image.size, e.image.getpixel((0, 0))) for e in ds]
    assert colours == [("RGB", (16, 14), (255, 0, 0)), ("RGB", (16, 14), (0, 255, 0)),
                       ("RGB", (15, 15), (0, 0, 255)), ("RGB", (16, 14), (255, 0, 0))]
    warnings = [r for r in caplog.records if r.name == "reference_impl.data.sources"]
    assert len(warnings) == 1 and "skipped 11 of 15 rows" in warnings[0].getMessage()


def test_no_warning_when_nothing_is_skipped(tmp_path, caplog):
    (tmp_path / "a.png").write_bytes(_png((1, 2, 3)))
    _write_jsonl(tmp_path / "d.jsonl", [{"problem": "q", "answer": "a", "image": "a.png"}])
    with caplog.at_level(logging.WARNING, logger="reference_impl.data.sources"):
        ds = LocalFileDataset(tmp_path / "d.jsonl")
    assert ds.skipped == {} and len(ds) == 1
    assert not [r for r in caplog.records if r.name == "reference_impl.data.sources"]


def _image_struct(data):
    return {"bytes": data, "path": None}


def _hf_shard(path, rows):
    """A shard in the Hugging Face datasets layout: images = list<struct<bytes, path>>."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "problem": pa.array([r[0] for r in rows], pa.string()),
        "answer": pa.array([r[1] for r in rows], pa.string()),
        "images": pa.array([r[2] for r in rows], pa.list_(image_type)),
        "category": pa.array([r[3] for r in rows], pa.string()),
    })
    pq.write_table(table, path)


@pytest.fixture
def hf_layout(tmp_path):
    """A ViRL39K/Geometry3K-style dataset directory with two train shards and a test shard."""
    data = tmp_path / "virl" / "data"
    data.mkdir(parents=True)
    red, blue = _png((255, 0, 0)), _png((0, 0, 255), size=(14, 18))
    _hf_shard(data / "train-00000-of-00002.parquet", [
        ("<image>\nFind x.", "12", [_image_struct(red)], "geometry"),
        ("Two images <image><image>", r"\boxed{B}", [_image_struct(blue),
                                                      _image_struct(red)], "chart"),
        ("corrupt", "1", [_image_struct(_garbage())], "geometry"),
        ("no images", "1", [], "geometry"),
    ])
    _hf_shard(data / "train-00001-of-00002.parquet", [
        ("empty answer", "", [_image_struct(red)], None),
        ("null answer", None, [_image_struct(red)], None),
        ("null image list", "1", None, None),
        ("ok", "7", [_image_struct(blue)], None),
    ])
    _hf_shard(data / "test-00000-of-00001.parquet", [("held out", "9", [_image_struct(red)], "x")])
    return tmp_path / "virl"


def test_parquet_directory_in_hf_layout(hf_layout):
    ds = LocalFileDataset(hf_layout, split="train", shuffle=False)
    assert [f.rsplit("/", 1)[-1] for f in ds.files] == [
        "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert ds.skipped == {"empty_answer": 2, "missing_image": 2, "corrupt_image": 1}
    assert ds.multi_image_rows == 1
    got = [(e.question, e.answer, e.task, e.id, e.image.size) for e in ds]
    assert got == [
        ("Find x.", "12", "geometry", "train-00000-of-00002.parquet:0", (16, 14)),
        ("Two images", r"\boxed{B}", "chart", "train-00000-of-00002.parquet:1", (14, 18)),
        ("ok", "7", "local", "train-00001-of-00002.parquet:3", (14, 18)),
    ]
    everything = LocalFileDataset(hf_layout, shuffle=False)
    assert len(everything) == 4 and everything[0].question == "held out"  # sorted paths
    test = LocalFileDataset(hf_layout / "data" / "test-*.parquet")
    assert [e.answer for e in test] == ["9"]


def test_parquet_with_binary_and_path_columns_and_custom_keys(tmp_path):
    (tmp_path / "p.png").write_bytes(_png((0, 9, 0)))
    table = pa.table({
        "q": ["from bytes", "from path", "missing"],
        "reward_model": [{"ground_truth": "a"}, {"ground_truth": "b"}, {"ground_truth": "c"}],
        "img": [_png((9, 0, 0)), None, None],
        "img_path": [None, "p.png", "gone.png"],
    })
    pq.write_table(table, tmp_path / "d.parquet")
    ds = LocalFileDataset(tmp_path / "d.parquet", question_keys=("q",),
                          answer_keys=("reward_model.ground_truth",),
                          image_keys=("img", "img_path"), shuffle=False)
    assert ds.skipped == {"missing_image": 1}
    assert [(e.question, e.answer, e.image.getpixel((0, 0))) for e in ds] == [
        ("from bytes", "a", (9, 0, 0)), ("from path", "b", (0, 9, 0))]


def test_chat_prompts_glob_and_image_root(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "x.png").write_bytes(_png((5, 5, 5)))
    chat = [{"role": "system", "content": "be brief"},
            {"role": "user",
             "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    _write_jsonl(tmp_path / "a.jsonl", [{"prompt": chat, "answer": "2", "image": "x.png"}])
    _write_jsonl(tmp_path / "b.jsonl", [{"prompt": [{"role": "user", "content": "<image>Q2"}],
                                         "answer": "3", "image": "x.png"}])
    (tmp_path / "c.txt").write_text("ignored")
    ds = LocalFileDataset(str(tmp_path / "*.jsonl"), image_root=root, shuffle=False)
    assert [(e.question, e.answer) for e in ds] == [("How many?", "2"), ("Q2", "3")]
    assert ds.skipped == {}


def test_limit_and_shuffled_sampling_is_deterministic_and_resumable(tmp_path):
    (tmp_path / "a.png").write_bytes(_png((1, 1, 1)))
    _write_jsonl(tmp_path / "d.jsonl",
                 [{"problem": f"q{i}", "answer": str(i), "image": "a.png"} for i in range(10)])
    assert len(LocalFileDataset(tmp_path / "d.jsonl", limit=6)) == 6
    ds = LocalFileDataset(tmp_path / "d.jsonl", seed=3)
    epoch = [e.answer for e in ds.sample(10)]
    assert sorted(epoch, key=int) == [str(i) for i in range(10)]
    assert epoch != [str(i) for i in range(10)]  # shuffled
    state = ds.state_dict()
    nxt = [e.answer for e in ds.sample(5)]
    again = LocalFileDataset(tmp_path / "d.jsonl", seed=3)
    assert [e.answer for e in again.sample(10)] == epoch
    again.load_state_dict(state)
    assert [e.answer for e in again.sample(5)] == nxt


def test_loader_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="source"):
        LocalFileDataset(tmp_path / "nothing-here")
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(TypeError, match="question_keys"):
        LocalFileDataset(tmp_path / "x.jsonl", question_keys="problem")
    with pytest.raises(ValueError, match="answer_keys"):
        LocalFileDataset(tmp_path / "x.jsonl", answer_keys=())
    with pytest.raises(ValueError, match="limit"):
        LocalFileDataset(tmp_path / "x.jsonl", limit=0)
    empty = LocalFileDataset(tmp_path / "x.jsonl")
    assert len(empty) == 0
    with pytest.raises(ValueError, match="empty"):
        empty.sample(1)


def test_prompt_helpers():
    assert strip_image_placeholders("<image>\n<image> Find  x <image>") == "Find  x"
    assert make_prompt("  Q?  ") == f"Q? {INSTRUCTION}"
    with pytest.raises(TypeError, match="question"):
        make_prompt(None)
