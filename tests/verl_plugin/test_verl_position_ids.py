"""verl 0.9.1's equal-length bug for 3-D (mRoPE) position ids, and the plugin's workaround.

``left_right_2_no_padding`` makes the ``(4, L_i)`` position ids a jagged tensor with
``as_nested_tensor``, which is ragged on the ``4`` rows when every ``L_i`` is the same; the
actor worker's ``maybe_fix_3d_position_ids`` then declares it ragged on the length, and the
first mini-batch selection fails (``pgpo_verl/workaround.py``, ``UPSTREAM_REPORT_POSITION_IDS.md``).
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.tensordict_utils import maybe_fix_3d_position_ids

PROMPT, RESPONSE = 3, 4


def _batch(lengths):
    """Left-padded prompts of 3 tokens, right-padded responses of ``lengths`` tokens, and
    ``(B, 4, L)`` position ids as verl's VL rollout gives them."""
    n, width = len(lengths), PROMPT + RESPONSE
    attention = torch.zeros(n, width, dtype=torch.long)
    response_mask = torch.zeros(n, RESPONSE, dtype=torch.long)
    for i, length in enumerate(lengths):
        attention[i, : PROMPT + length] = 1
        response_mask[i, :length] = 1
    text = (attention.cumsum(-1) - 1).clamp_min(0)
    rows = torch.stack([text, text + 100, text + 200, text + 300], dim=1)  # 4 distinct rows
    return TensorDict(dict(input_ids=torch.arange(n * width).reshape(n, width),
                           attention_mask=attention, response_mask=response_mask,
                           position_ids=rows), batch_size=n)


def _worker_side_select(padding_fn, lengths, order):
    """What ``TrainingWorker.train_mini_batch`` does with the trainer's batch."""
    data = padding_fn(_batch(lengths))
    maybe_fix_3d_position_ids(data)
    return tu.index_select_tensor_dict(data, torch.tensor(order))


def test_stock_verl_fails_on_equal_lengths():
    import verl.workers.utils.padding as padding

    original = getattr(padding.left_right_2_no_padding, "__wrapped__",
                       padding.left_right_2_no_padding)
    _worker_side_select(original, (4, 2, 3, 1), [1, 0])  # unequal lengths: fine
    with pytest.raises(RuntimeError):
        _worker_side_select(original, (4, 4, 4, 4), [1, 0])


@pytest.mark.parametrize("lengths", [(4, 2, 3, 1), (4, 4, 4, 4), (2, 2)])
def test_workaround_keeps_the_position_ids(lengths):
    import verl.workers.utils.padding as padding
    from verl.trainer.ppo import ray_trainer

    from pgpo_verl import apply_position_ids_workaround

    apply_position_ids_workaround()
    apply_position_ids_workaround()  # idempotent
    assert ray_trainer.left_right_2_no_padding is padding.left_right_2_no_padding
    order = list(range(len(lengths)))[::-1]
    selected = _worker_side_select(padding.left_right_2_no_padding, lengths, order)
    reference = _batch(lengths)
    got = selected["position_ids"].unbind()
    assert selected["position_ids"]._ragged_idx == 2
    for j, i in enumerate(order):
        keep = reference["attention_mask"][i].bool()
        assert torch.equal(got[j], reference["position_ids"][i][:, keep])


def _transfer_queue_batch(lengths):
    """The v1 loop's batch: TransferQueue stacks the per-sample ``(4, L_i)`` position ids with
    ``as_nested_tensor`` (ragged on the rows when all ``L_i`` are equal)."""
    data = _batch(lengths)
    rows = [data["position_ids"][i][:, data["attention_mask"][i].bool()]
            for i in range(len(lengths))]
    return TensorDict(dict(position_ids=torch.nested.as_nested_tensor(rows, layout=torch.jagged)),
                      batch_size=len(lengths)), rows


@pytest.mark.parametrize("lengths", [(4, 2, 3, 1), (4, 4, 4, 4), (2, 2)])
def test_workaround_fixes_the_v1_loops_position_ids(lengths):
    import verl.utils.tensordict_utils as tensordict_utils
    import verl.workers.engine_workers as engine_workers

    from pgpo_verl import apply_position_ids_workaround

    order = torch.tensor(list(range(len(lengths)))[::-1])
    if len(set(lengths)) == 1:  # stock verl fails on equal lengths
        data, _ = _transfer_queue_batch(lengths)
        maybe_fix_3d_position_ids(data)
        with pytest.raises(RuntimeError):
            tu.index_select_tensor_dict(data, order)
    apply_position_ids_workaround()
    assert engine_workers.maybe_fix_3d_position_ids is tensordict_utils.maybe_fix_3d_position_ids
    data, rows = _transfer_queue_batch(lengths)
    tensordict_utils.maybe_fix_3d_position_ids(data)
    selected = tu.index_select_tensor_dict(data, order)
    assert selected["position_ids"]._ragged_idx == 2
    for j, i in enumerate(order.tolist()):
        assert torch.equal(selected["position_ids"].unbind()[j], rows[i])
