"""Data parallelism through torch.distributed (launched by ``torchrun``): process group, rank helpers, and the
collective pieces the trainer needs. With one process every helper is a no-op, so the trainer has one code path.

``torchrun --nproc_per_node N -m qlib train ...`` runs the same command on N processes: each holds a replica of the
teacher (eval mode) and of the student wrapped in ``DistributedDataParallel`` (the learned quantizer parameters are
ordinary DDP parameters), reads its slice of the global batch, and the contrastive memory bank receives the gathered
(token id, anchor) updates of all ranks in rank order, so every rank's bank stays identical.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process (0, 1 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); return this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def is_main() -> bool:
    return world()[0] == 0


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def mean_scalar(x: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (for logging)."""
    if world()[1] == 1:
        return x
    y = x.detach().clone().float()
    dist.all_reduce(y)
    return y / world()[1]


def all_reduce_grads(params) -> None:
    """Average the gradients of parameters that are not inside the DDP module (the contrastive heads)."""
    _, n = world()
    if n == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= n


def gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate tensors of every rank in rank order, each sharing its first dimension N (ids [N], rows [N, d],
    weights [N]); ranks may hold different N."""
    _, n = world()
    if n == 1:
        return tensors
    count = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    counts = [torch.zeros_like(count) for _ in range(n)]
    dist.all_gather(counts, count)
    k = [int(c.item()) for c in counts]
    out = []
    for t in tensors:
        pad = torch.zeros((max(k), *t.shape[1:]), dtype=t.dtype, device=t.device)
        pad[: t.shape[0]] = t
        parts = [torch.zeros_like(pad) for _ in range(n)]
        dist.all_gather(parts, pad)
        out.append(torch.cat([p[:c] for p, c in zip(parts, k)]))
    return tuple(out)


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    _, n = world()
    if n == 1:
        return [obj]
    out = [None] * n
    dist.all_gather_object(out, obj)
    return out
