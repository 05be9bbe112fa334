"""torch.distributed set-up for `torchrun` (env:// rendezvous; single- and multi-node alike).

gloo on CPU, nccl on CUDA. Without torchrun's environment (WORLD_SIZE unset or 1) nothing starts.
"""

from __future__ import annotations

import os
import socket
import time

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
    _PEERS[:] = all_peers()
    return device


# (host name, process id) of every rank, gathered when the group forms: when a rank stops, the others
# can then name it (a killed rank leaves them only a broken connection, with an address, not a rank).
_PEERS: list[tuple[str, int]] = []


def all_peers() -> list[tuple[str, int]]:
    peers: list = [None] * dist.get_world_size()
    dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    return [tuple(peer) for peer in peers]


def is_lost_peer(error: BaseException) -> bool:
    """A collective that failed because another rank went away (gloo: a closed or reset connection;
    NCCL: a backend error)."""
    if not is_distributed() or not isinstance(error, RuntimeError):
        return False
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(error)
    return (isinstance(error, backend_error) if backend_error else False) or any(
        clue in text for clue in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo"))


def stopped_ranks() -> list[tuple[int, int]]:
    """(rank, pid) of the ranks on this machine whose process has ended."""
    host = socket.gethostname()
    stopped = []
    for peer_rank, (peer_host, pid) in enumerate(_PEERS):
        if peer_host == host and peer_rank != rank() and not _process_alive(pid):
            stopped.append((peer_rank, pid))
    return stopped


def lost_peer_message(wait_s: float = 3.0) -> str:
    """One line for this rank: which rank stopped, where it can tell. A killed peer's connections
    close while its process is still exiting, so its end is looked for a little while."""
    deadline = time.monotonic() + wait_s
    stopped = stopped_ranks()
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.1)
        stopped = stopped_ranks()
    if stopped:
        which = ", ".join(f"rank {peer_rank} (pid {pid})" for peer_rank, pid in stopped)
        return (f"rank {rank()}: stopping: {which} ended during training; its own output (or the launcher's "
                f"report) says why")
    return (f"rank {rank()}: stopping: another rank ended or lost its connection during training (on another "
            f"machine, or it ended since); the launcher's report names it")


def _process_alive(pid: int) -> bool:
    """False for a process that is gone, or has ended and waits for its parent (a zombie: the
    launcher may not have collected a killed rank yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): alive, as far as one can tell
        return True


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
