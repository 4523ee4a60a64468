"""Everything multi-process training needs in one place: who we are, what all ranks agree on, and how
state is made identical on every rank.

Collective calls must pair up across ranks: every function here is called by every rank at the same point
of the run, or by none. Control values (seeds, paths, per-step counts, the stop flag) travel over a CPU
(gloo) group, so agreeing on them never waits for the GPU's queued work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as dist

from utils.errors import UsageError


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """The number of processes paddle.distributed.launch started (1 when run directly)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def init(device: str) -> RankInfo:
    """Join the process group when started by paddle.distributed.launch."""
    world = launched_world_size()
    if world <= 1:
        return RankInfo()
    if device == "cpu" and paddle.device.is_compiled_with_cuda() and os.environ.get("FLAGS_selected_gpus"):
        # the launcher assigned GPUs (--devices / --gpus) but the script was told to stay on the CPU
        raise UsageError(f"--use_gpu=False, but paddle.distributed.launch started {world} processes on GPUs "
                         f"{os.environ['FLAGS_selected_gpus']}; drop --use_gpu=False, or launch CPU processes "
                         "with --nproc_per_node N and no --devices/--gpus")
    dist.init_parallel_env()
    return RankInfo(dist.get_rank(), dist.get_world_size())


class Control:
    """Small integer vectors that all ranks sum or take from rank 0, over a CPU group.

    On a GPU node the default group is NCCL, whose collectives run on the device stream: reading their
    result on the host would wait for the whole queued step. A gloo group on CPU tensors does not.
    """

    def __init__(self, rank: RankInfo):
        self.rank = rank
        self.group = None
        if rank.distributed and paddle.device.is_compiled_with_cuda():
            # paddle.distributed.new_group(backend="gloo") -> ProcessGroupGloo over the launcher's store
            # (collective._new_process_group_impl); not observable without GPUs.
            self.group = dist.new_group(backend="gloo")

    def _tensor(self, values) -> paddle.Tensor:
        array = np.asarray(values, dtype=np.int64)
        if self.group is not None:
            return paddle.to_tensor(array, place=paddle.CPUPlace())
        return paddle.to_tensor(array)

    def sum(self, values: list[int]) -> list[int]:
        """Element-wise sum over ranks (the values themselves in a single process)."""
        if not self.rank.distributed:
            return [int(v) for v in values]
        tensor = self._tensor(values)
        dist.all_reduce(tensor, group=self.group)
        return [int(v) for v in tensor.numpy()]

    def from_main(self, value: int) -> int:
        """Rank 0's integer on every rank."""
        if not self.rank.distributed:
            return int(value)
        tensor = self._tensor([value])
        dist.broadcast(tensor, src=0, group=self.group)
        return int(tensor.numpy()[0])

    def text_from_main(self, text: str | None) -> str | None:
        """Rank 0's string (or None) on every rank."""
        if not self.rank.distributed:
            return text
        payload = [text]
        dist.broadcast_object_list(payload, src=0)
        return payload[0]


def average_float_state(tensors: list[paddle.Tensor], rank: RankInfo) -> None:
    """Replace each floating tensor by its mean over ranks, in place (BatchNorm statistics, EMA shadows).

    DataParallel all-reduces gradients only: running statistics drift apart per rank, so the model a rank
    validates would differ from the one rank 0 saves.
    """
    if not rank.distributed:
        return
    with paddle.no_grad():
        for tensor in tensors:
            if not paddle.is_floating_point(tensor):
                continue
            total = tensor.detach().astype("float32")
            dist.all_reduce(total)
            paddle.assign((total / rank.world_size).astype(tensor.dtype), output=tensor)


def buffers_and_statistics(model: paddle.nn.Layer) -> list[paddle.Tensor]:
    """The tensors gradients do not synchronise: buffers and non-trainable parameters (BN mean/variance)."""
    found = [p for p in model.parameters() if p.stop_gradient]
    found.extend(b for b in model.buffers() if b is not None)
    return found
