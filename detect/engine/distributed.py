"""torch.distributed set-up for `torchrun` (env:// rendezvous; single- and multi-node alike).

gloo on CPU, nccl on CUDA. Without torchrun's environment (WORLD_SIZE unset or 1) nothing starts.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> torch.device:
    """Joins the process group torchrun describes; returns this process's device (cuda:LOCAL_RANK
    on CUDA)."""
    if not launched_by_torchrun() or is_distributed():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", init_method="env://", device_id=device)
    else:
        dist.init_process_group("gloo", init_method="env://")
    return device


def shutdown() -> None:
    """Leaves the process group after every rank has finished: the main rank does work of its own
    at the end (checkpoint, TensorBoard), and a rank that tears down early while a peer is still
    connected can end in an aborted gloo connection instead of a clean exit."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(value):
    """Rank 0's `value` on every rank (e.g. the run folder, whose timestamp differs per rank)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_finite(loss: torch.Tensor) -> bool:
    """True when the loss is finite on every rank (so all ranks stop or skip together)."""
    finite = torch.isfinite(loss.detach()).to(torch.int32)
    if is_distributed():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def broadcast_buffers(module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: in training each rank updates
    them from its own batches, and evaluation must run the same model everywhere."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)
