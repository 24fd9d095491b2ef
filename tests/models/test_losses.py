import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from modeling_scot import scot_contrastive_loss
from modeling_scot.trainer import gather_with_grad


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_loss_matches_hand_computation():
    q = _unit([1.0, 0.0], [0.0, 1.0])
    u = _unit([1.0, 1.0], [0.0, 1.0])
    n = _unit([[1.0, 0.0]], [[1.0, 0.0]]).reshape(2, 1, 2)
    c = _unit([0.0, 1.0], [1.0, 1.0])
    scale, w_h, w_c = 10.0, 0.5, 2.0
    r = 1 / math.sqrt(2)
    # query 0: positive u0 (dot r); in-batch u1 (0); hard negative (1); caption (0)
    loss0 = -math.log(math.exp(10 * r) / (math.exp(10 * r) + math.exp(0) + w_h * math.exp(10) + w_c * math.exp(0)))
    # query 1: positive u1 (dot 1); in-batch u0 (r); hard negative (0); caption (r)
    loss1 = -math.log(math.exp(10) / (math.exp(10 * r) + math.exp(10) + w_h * math.exp(0) + w_c * math.exp(10 * r)))
    loss = scot_contrastive_loss(
        q, u, scale, negative_embeds=n, caption_embeds=c, hard_negative_weight=w_h, caption_negative_weight=w_c
    )
    assert loss.item() == pytest.approx((loss0 + loss1) / 2, rel=1e-5)


def test_zero_weight_and_mask_drop_groups():
    torch.manual_seed(0)
    q, u, c = (F.normalize(torch.randn(3, 8), dim=-1) for _ in range(3))
    n = F.normalize(torch.randn(3, 2, 8), dim=-1)
    plain = scot_contrastive_loss(q, u, 20.0)
    assert scot_contrastive_loss(q, u, 20.0, negative_embeds=n, caption_embeds=c, hard_negative_weight=0,
                                 caption_negative_weight=0).item() == pytest.approx(plain.item(), rel=1e-6)
    masked = scot_contrastive_loss(q, u, 20.0, negative_embeds=n, negative_mask=torch.zeros(3, 2, dtype=torch.bool))
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)
    assert scot_contrastive_loss(q, u, 20.0, negative_embeds=n).item() > plain.item()


def test_labels_select_positives_in_a_larger_target_set():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(2, 4), dim=-1)
    u = F.normalize(torch.randn(5, 4), dim=-1)
    labels = torch.tensor([3, 4])
    logits = 7.0 * q @ u.T
    expected = F.cross_entropy(logits, labels)
    assert torch.allclose(scot_contrastive_loss(q, u, 7.0, labels=labels), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hard_negative_weight=-1.0, negative_embeds=torch.zeros(2, 1, 4)), "hard_negative_weight"),
        (dict(caption_negative_weight=-0.5, caption_embeds=torch.zeros(2, 4)), "caption_negative_weight"),
    ],
)
def test_negative_weights_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scot_contrastive_loss(torch.zeros(2, 4), torch.zeros(2, 4), 1.0, **kwargs)


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match="2-D"):
        scot_contrastive_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="rows"):
        scot_contrastive_loss(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)


def _distributed_loss(rank: int, world_size: int, port: int, queries, targets, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    sizes = [3, 2]
    start = sum(sizes[:rank])
    local_q = queries[start : start + sizes[rank]].clone().requires_grad_(True)
    local_t = targets[start : start + sizes[rank]].clone().requires_grad_(True)
    gathered, offset = gather_with_grad(local_t)
    labels = offset + torch.arange(sizes[rank])
    loss = scot_contrastive_loss(local_q, gathered, 10.0, labels=labels)
    loss.backward()
    results[rank] = (loss.item() * sizes[rank], local_t.grad is not None and bool(local_t.grad.abs().sum() > 0))
    dist.destroy_process_group()


def test_gather_with_grad_matches_global_batch():
    """Two processes with uneven batches give the same summed loss as one process on the whole batch."""
    import socket

    torch.manual_seed(2)
    queries = F.normalize(torch.randn(5, 6), dim=-1)
    targets = F.normalize(torch.randn(5, 6), dim=-1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_distributed_loss, args=(2, port, queries, targets, results), nprocs=2, join=True)
    total = sum(results[r][0] for r in range(2)) / 5
    expected = scot_contrastive_loss(queries, targets, 10.0).item()
    assert total == pytest.approx(expected, rel=1e-5)
    assert all(results[r][1] for r in range(2))
