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


def gather_rows(ids: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (ids [N], rows [N, d]) of every rank in rank order; ranks may hold different N."""
    _, n = world()
    if n == 1:
        return ids, rows
    count = torch.tensor([ids.numel()], device=ids.device)
    counts = [torch.zeros_like(count) for _ in range(n)]
    dist.all_gather(counts, count)
    top = int(max(c.item() for c in counts))
    pad_ids = torch.zeros(top, dtype=ids.dtype, device=ids.device)
    pad_rows = torch.zeros(top, rows.shape[-1], dtype=rows.dtype, device=rows.device)
    pad_ids[: ids.numel()], pad_rows[: ids.numel()] = ids, rows
    all_ids = [torch.zeros_like(pad_ids) for _ in range(n)]
    all_rows = [torch.zeros_like(pad_rows) for _ in range(n)]
    dist.all_gather(all_ids, pad_ids)
    dist.all_gather(all_rows, pad_rows)
    k = [int(c.item()) for c in counts]
    return (torch.cat([a[:c] for a, c in zip(all_ids, k)]), torch.cat([r[:c] for r, c in zip(all_rows, k)]))


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    _, n = world()
    if n == 1:
        return [obj]
    out = [None] * n
    dist.all_gather_object(out, obj)
    return out
