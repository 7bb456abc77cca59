"""`mr.distributed` in one process: the grad hook, communicators, sharding, SyncBatchNorm's
math and DistributedDataParallel's buckets. The 2-rank jobs are in test_distributed_mpi.py."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import distributed as dist
from minitorch_resnext import functional as F
from minitorch_resnext import nn
from minitorch_resnext.data import DataLoader, TensorDataset
from minitorch_resnext.testing import gradcheck


class RankOf(dist.LocalComm):
    """Rank `rank` of `world_size` for sharding only (its collectives are not used)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size


# ----- the engine's post-accumulate-grad hook -------------------------------------------
def test_hook_runs_once_per_backward_after_the_whole_gradient():
    x = mr.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    seen = []
    x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (x * x + x).sum().backward()  # x reaches the loss along three edges
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], [3.0, 5.0])
    x.sum().backward()  # accumulates, fires again
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[1], [4.0, 6.0])
    x.backward(mr.tensor([1.0, 1.0], dtype="float64"))  # the leaf is the root
    assert len(seen) == 3


def test_hook_only_on_leaves():
    y = mr.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.register_post_accumulate_grad_hook(lambda t: None)


# ----- communicators --------------------------------------------------------------------
def test_local_comm_is_world_size_one_and_init_sets_the_default():
    comm = dist.init("local")
    assert dist.get_communicator() is comm
    assert (comm.rank, comm.world_size, comm.is_main) == (0, 1, True)
    a = np.arange(4.0)
    comm.allreduce(a, "mean")
    comm.broadcast(a)
    comm.iallreduce(a).wait()
    comm.barrier()
    np.testing.assert_array_equal(a, np.arange(4.0))
    with pytest.raises(ValueError, match="op"):
        comm.allreduce(a, "max")
    with pytest.raises(ValueError, match="root"):
        comm.broadcast(a, root=1)
    with pytest.raises(ValueError, match="backend"):
        dist.init("gloo")


# ----- sharding -------------------------------------------------------------------------
@pytest.mark.parametrize("mode, sizes", [("pad", [4, 4, 4]), ("drop", [3, 3, 3]),
                                         ("exact", [4, 3, 3])])
def test_shards_of_an_uneven_epoch(mode: str, sizes: list[int]):
    order = np.random.default_rng(0).permutation(10)
    shards = [dist.shard_indices(order, r, 3, mode) for r in range(3)]
    assert [len(s) for s in shards] == sizes
    merged = np.concatenate(shards)
    if mode == "pad":  # every index, plus the first two again
        assert sorted(merged) == sorted([*range(10), *order[:2]])
    elif mode == "drop":
        assert sorted(merged) == sorted(order[:9])
    else:
        assert sorted(merged) == list(range(10))


def test_rank_batches_together_are_the_single_process_batch():
    data = TensorDataset(np.arange(24.0).reshape(24, 1), np.arange(24))
    whole = [y.numpy() for _, y in DataLoader(data, 8, shuffle=True, seed=5)]
    per_rank = [[y.numpy() for _, y in dist.DistributedDataLoader(
        data, 4, shuffle=True, seed=5, comm=RankOf(r, 2))] for r in range(2)]
    assert len(whole) == len(per_rank[0]) == len(per_rank[1]) == 3
    for k, batch in enumerate(whole):
        assert sorted(np.concatenate([per_rank[0][k], per_rank[1][k]])) == sorted(batch)


def test_distributed_loader_lengths_and_epochs():
    data = TensorDataset(np.zeros((10, 1)), np.arange(10))
    loaders = [dist.DistributedDataLoader(data, 3, shuffle=True, comm=RankOf(r, 3))
               for r in range(3)]
    assert [len(d) for d in loaders] == [2, 2, 2]  # 4 samples each (padded)
    first = [np.concatenate([y.numpy() for _, y in d]) for d in loaders]
    assert set(np.concatenate(first)) == set(range(10))
    again = [np.concatenate([y.numpy() for _, y in d]) for d in loaders]  # next epoch
    assert any((a != b).any() for a, b in zip(first, again))
    exact = [dist.DistributedDataLoader(data, 3, comm=RankOf(r, 3), even=False)
             for r in range(3)]
    assert [d.num_samples() for d in exact] == [4, 3, 3]
    assert sorted(np.concatenate([y.numpy() for d in exact for _, y in d])) == list(range(10))


# ----- SyncBatchNorm --------------------------------------------------------------------
def _bn_inputs(seed: int = 0) -> tuple[mr.Tensor, mr.Tensor, mr.Tensor]:
    rng = np.random.default_rng(seed)
    x = mr.tensor(rng.standard_normal((3, 2, 4, 3)) * 2 + 1, requires_grad=True, dtype="float64")
    w = mr.tensor(rng.uniform(0.5, 1.5, 2), requires_grad=True, dtype="float64")
    b = mr.tensor(rng.standard_normal(2), requires_grad=True, dtype="float64")
    return x, w, b


def test_sync_batch_norm_function_matches_batch_norm():
    x, w, b = _bn_inputs()
    stats = [np.zeros(2), np.ones(2)], [np.zeros(2), np.ones(2)]
    y_sync = dist.SyncBatchNormFunction.apply(x, w, b, comm=dist.LocalComm(),
                                              running_mean=stats[0][0], running_var=stats[0][1],
                                              momentum=0.3, eps=1e-5)
    y_ref = F.batch_norm(x, mr.Tensor(stats[1][0]), mr.Tensor(stats[1][1]), w, b,
                         training=True, momentum=0.3, eps=1e-5)
    np.testing.assert_allclose(y_sync.numpy(), y_ref.numpy(), atol=1e-12)
    np.testing.assert_allclose(stats[0][0], stats[1][0], atol=1e-14)  # running statistics
    np.testing.assert_allclose(stats[0][1], stats[1][1], atol=1e-14)
    g = np.random.default_rng(1).standard_normal(x.shape)
    grads = []
    for y in (y_sync, y_ref):
        for t in (x, w, b):
            t.grad = None
        y.backward(g)
        grads.append([t.grad.numpy() for t in (x, w, b)])
    for mine, ref in zip(*grads):
        np.testing.assert_allclose(mine, ref, atol=1e-12)


def test_sync_batch_norm_function_gradcheck():
    x, w, b = _bn_inputs(2)
    report = gradcheck(lambda x, w, b: dist.SyncBatchNormFunction.apply(
        x, w, b, comm=dist.LocalComm()), [x, w, b])
    assert report, str(report)


def test_convert_sync_batchnorm_keeps_order_and_shares_tensors():
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 1), bn, nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)))
    before = model.state_dict()
    converted = dist.convert_sync_batchnorm(model)
    assert converted is model
    assert [type(m).__name__ for m in model.modules()] == [
        "Sequential", "Conv2d", "SyncBatchNorm", "Sequential", "ReLU", "SyncBatchNorm"]
    assert model[1].weight is bn.weight and model[1].running_var is bn.running_var
    assert list(model.state_dict()) == list(before)
    lone = dist.convert_sync_batchnorm(nn.BatchNorm2d(4).eval())
    assert isinstance(lone, dist.SyncBatchNorm) and not lone.training


def test_sync_batch_norm_alone_follows_batch_norms_formula():
    """World size 1: y = (x - mean) / sqrt(var + eps) * w + b over the local batch, and the
    running statistics follow PyTorch's rule (unbiased variance), written out here."""
    x, _, _ = _bn_inputs()
    sync = dist.SyncBatchNorm(2, momentum=0.3, comm=dist.LocalComm()).double()
    sync.weight.data[...], sync.bias.data[...] = [0.5, 2.0], [1.0, -1.0]
    data = x.numpy()
    mean, var = data.mean(axis=(0, 2, 3)), data.var(axis=(0, 2, 3))
    want = ((data - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
            * np.array([0.5, 2.0])[:, None, None] + np.array([1.0, -1.0])[:, None, None])
    np.testing.assert_allclose(sync(x).numpy(), want, rtol=1e-12, atol=1e-12)
    m = data.size // 2
    np.testing.assert_allclose(sync.running_mean.numpy(), 0.3 * mean, rtol=1e-12)
    np.testing.assert_allclose(sync.running_var.numpy(), 0.7 + 0.3 * var * m / (m - 1),
                               rtol=1e-12)


class Mirror(dist.LocalComm):
    """Rank 0 of two whose other rank holds the same values: a sum over the ranks is twice the
    local one."""

    world_size = 2

    def iallreduce(self, array, op="sum"):
        if op == "sum":
            array *= 2
        return super().iallreduce(array, op)


def test_sync_batch_norm_is_batch_norm_over_the_global_batch():
    """With a second rank holding the same batch, SyncBatchNorm's output, running statistics
    and input gradient are BatchNorm2d's on both batches together (statistics of 2N values);
    its weight and bias gradients are this rank's share, half of them."""
    x, w, b = _bn_inputs(3)
    sync = dist.SyncBatchNorm(2, momentum=0.3, comm=Mirror()).double()
    plain = nn.BatchNorm2d(2, momentum=0.3).double()
    for module in (sync, plain):
        module.weight.data[...], module.bias.data[...] = w.numpy(), b.numpy()
    g = np.random.default_rng(4).standard_normal(x.shape)
    both = mr.tensor(np.concatenate([x.numpy()] * 2), requires_grad=True, dtype="float64")
    y_sync, y_plain = sync(x), plain(both)
    y_sync.backward(mr.tensor(g, dtype="float64"))
    y_plain.backward(mr.tensor(np.concatenate([g, g]), dtype="float64"))
    np.testing.assert_allclose(y_sync.numpy(), y_plain.numpy()[:3], rtol=1e-12, atol=1e-12)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(sync, name).numpy(), getattr(plain, name).numpy(),
                                   rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), both.grad.numpy()[:3], rtol=1e-10, atol=1e-12)
    for name in ("weight", "bias"):
        np.testing.assert_allclose(getattr(sync, name).grad.numpy(),
                                   getattr(plain, name).grad.numpy() / 2, rtol=1e-12)


# ----- DistributedDataParallel ----------------------------------------------------------
def _mlp() -> nn.Module:
    mr.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()


def test_buckets_follow_reverse_order_within_the_cap():
    model = _mlp()
    ddp = dist.DistributedDataParallel(model, dist.LocalComm(), bucket_cap_mb=100 / 2**20)
    # reverse order: 2.bias (3), 2.weight (24), 0.bias (8), 0.weight (32); 100 bytes = 12 floats
    assert [[p.shape for p in b.params] for b in ddp.buckets] == [
        [(3,)], [(3, 8)], [(8,)], [(8, 4)]]
    one = dist.DistributedDataParallel(_mlp(), dist.LocalComm())
    assert [len(b.params) for b in one.buckets] == [4]
    assert one.buckets[0].buffer.shape == (67,)


def test_gradients_are_synced_by_backward_alone():
    model = _mlp()
    ddp = dist.DistributedDataParallel(model, dist.LocalComm(), bucket_cap_mb=0)
    x = mr.tensor(np.ones((2, 4)), dtype="float64")
    ddp(x).sum().backward()
    assert not ddp._in_progress()
    expected = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for p, want in zip(model.parameters(), expected):
        np.testing.assert_array_equal(p.grad.numpy(), want)


def test_an_unused_parameter_needs_finish_gradient_sync():
    model = _mlp()
    extra = nn.Parameter(np.ones(2))
    model.register_parameter("unused", extra)  # last in reverse order: its bucket never fills
    ddp = dist.DistributedDataParallel(model, dist.LocalComm(), bucket_cap_mb=0)
    ddp(mr.tensor(np.ones((2, 4)), dtype="float64")).sum().backward()
    assert ddp._in_progress()
    with pytest.raises(RuntimeError, match="finish_gradient_sync"):
        ddp(mr.tensor(np.ones((2, 4)), dtype="float64"))
    ddp.finish_gradient_sync()
    assert not ddp._in_progress()
    np.testing.assert_array_equal(extra.grad.numpy(), [0.0, 0.0])
    ddp.finish_gradient_sync()  # nothing left: a no-op


def test_abort_waits_until_the_launcher_has_read_this_ranks_last_words():
    # MPI_Abort tears the job down: what a rank wrote to its stderr pipe just before is lost
    # unless the reader (the launcher) has taken it out of the pipe first
    from minitorch_resnext.distributed import mpi

    line = b"rank 1 of 2 failed\n"
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    received = bytearray()

    def slow_launcher() -> None:
        time.sleep(0.3)
        received.extend(os.read(read_end, 1 << 16))

    reader = threading.Thread(target=slow_launcher)
    try:
        os.dup2(write_end, 2)
        os.write(2, line)
        assert mpi._unread_bytes(2) == len(line)
        start = time.perf_counter()
        reader.start()
        mpi._drain_output(timeout=5.0)
        waited = time.perf_counter() - start
        assert mpi._unread_bytes(2) == 0
    finally:
        os.dup2(saved, 2)
        if reader.is_alive():
            reader.join()
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert bytes(received) == line
    assert 0.3 <= waited < 5.0
