import copy

import pytest
import torch

from groot.model.action_head import FlowMatchingActionHead
from groot.model.config import preset_config
from groot.train.embodiment_slices import EmbodimentSlices, is_embodiment_table


def _batch(embodiment_ids, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(embodiment_ids)
    return (torch.randn(n, 7, 64, generator=g), torch.randn(n, 1, 64, generator=g),
            torch.randn(n, 16, 32, generator=g), torch.ones(n, 16, 32, dtype=torch.bool),
            torch.tensor(embodiment_ids, dtype=torch.long))


def _train(head, batches):
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=1e-2,
                                  weight_decay=0.0)
    losses = []
    for step, batch in enumerate(batches):
        torch.manual_seed(100 + step)  # same noise / timesteps in both runs
        loss = head(*batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, optimizer


@pytest.mark.parametrize("ids_per_batch", [[[31, 31]], [[5, 31, 5], [31, 31, 31]]])
def test_sliced_training_equals_full_training_and_leaves_other_rows(ids_per_batch):
    torch.manual_seed(0)
    full_head = FlowMatchingActionHead(preset_config("tiny").action_head_cfg)
    sliced_head = copy.deepcopy(full_head)
    before = {k: v.clone() for k, v in full_head.state_dict().items()}
    used = sorted({i for ids in ids_per_batch for i in ids})
    slices = EmbodimentSlices(sliced_head, used)
    assert slices.num_tables == sum(is_embodiment_table(m) for m in full_head.modules()) > 0

    batches = [_batch(ids, seed) for seed, ids in enumerate(ids_per_batch * 2)]
    full_losses, _ = _train(full_head, batches)
    sliced_losses, optimizer = _train(sliced_head, batches)
    assert sliced_losses == pytest.approx(full_losses, abs=1e-6)

    # optimizer state only for the used rows
    table_states = [s["exp_avg"] for p, s in optimizer.state.items() if p.dim() == 3]
    assert table_states and all(s.shape[0] == len(used) for s in table_states)

    sliced_state = slices.full_state_dict(sliced_head.state_dict())
    assert set(sliced_state) == set(full_head.state_dict())
    for name, tensor in full_head.state_dict().items():
        torch.testing.assert_close(sliced_state[name], tensor, atol=1e-6, rtol=1e-5)
    unused = [i for i in range(32) if i not in used]
    for name in ("state_encoder.layer1.W", "action_decoder.layer2.b"):
        assert torch.equal(full_head.state_dict()[name][unused], before[name][unused])
        assert not torch.equal(full_head.state_dict()[name][used], before[name][used])
    assert sliced_head.state_encoder.layer1.W.shape[0] == len(used)  # the model keeps its slices


def test_unknown_embodiment_fails_loudly():
    torch.manual_seed(0)
    head = FlowMatchingActionHead(preset_config("tiny").action_head_cfg)
    EmbodimentSlices(head, [31])
    with pytest.raises((ValueError, IndexError)):
        head(*_batch([4, 4]))
