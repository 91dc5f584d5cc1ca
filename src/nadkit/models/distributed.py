"""Training on several processes or machines with torch.distributed, as launched by ``torchrun``.

``torchrun --nproc-per-node N -m nadkit train ...`` starts N copies of the same command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous address) in their environment. Each
copy reads the data and fits the feature pipeline itself (deterministic, so all agree); the one
training loop (:class:`~nadkit.models.trainer.Trainer`) then asks :func:`data_parallel` for its
helper, which

- joins the process group (``gloo`` on CPU, ``nccl`` on CUDA, each process on the GPU of its
  ``LOCAL_RANK``) the first time it is needed, and leaves it when the process ends;
- wraps the loss in :class:`~torch.nn.parallel.DistributedDataParallel`, so gradients are averaged
  over the processes in every step (and the initial weights are rank 0's);
- shares out every training batch: each process takes its ``1/N`` of the batch's rows, so every
  process sees a different ``1/N`` of each epoch's rows (as with ``DistributedSampler``) while a step
  still averages the gradient over the whole batch: the steps, and so the model, are those of one
  process, with each process computing a part of each;
- deals the validation batches round-robin and sums the losses over the processes, and takes rank 0's
  selection metric and clock, so early stopping, the best epoch and the time budget are decided
  identically everywhere.

Only rank 0 writes (:func:`is_primary`): the bundle, its threshold, its ONNX graph; the other ranks
finish quietly. Without ``torchrun`` (or with one process) nothing here changes anything: the helper
is :class:`SingleProcess`, which passes everything through.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a ``torchrun`` launch."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def primary(self) -> bool:
        return self.rank == 0


def launch() -> Launch | None:
    """This process's place in a launch of several processes (from ``WORLD_SIZE``, ``RANK`` and
    ``LOCAL_RANK``); None for a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    if world <= 1:
        return None
    return Launch(rank=rank, local_rank=local, world_size=world)


def is_primary() -> bool:
    """True unless this is a ``torchrun`` process of rank other than 0 (only rank 0 writes)."""
    current = launch()
    return current is None or current.primary


def init_process_group(device: torch.device) -> Launch | None:
    """Join the launch's process group (once; ``nccl`` for a CUDA ``device``, else ``gloo``), and leave
    it when the process ends. None, and nothing done, for a single process."""
    import torch.distributed as dist

    current = launch()
    if current is None:
        return None
    if not dist.is_available():  # pragma: no cover - every supported torch build has it
        raise RuntimeError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            import torch

            torch.cuda.set_device(current.local_rank)
        dist.init_process_group(backend=backend)
        atexit.register(destroy_process_group)
        log.info(
            "joined a %s process group: rank %d of %d (local rank %d)",
            backend,
            current.rank,
            current.world_size,
            current.local_rank,
        )
    return current


def destroy_process_group() -> None:
    """Leave the process group, if this process joined one."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Launch | None]:
    """Join the process group for the duration of the block (a no-op for a single process)."""
    current = init_process_group(device)
    try:
        yield current
    finally:
        if current is not None:
            destroy_process_group()


def quiet_other_ranks() -> None:
    """In a ``torchrun`` process of rank other than 0, send standard output to nowhere (rank 0 prints
    the command's progress and summary; errors still reach standard error)."""
    if not is_primary():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _loss_module(module: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor]) -> nn.Module:
    """``loss(module, batch)`` as the forward pass of a module holding ``module``, so that
    DistributedDataParallel sees the whole loss computation, whatever methods of ``module`` it calls."""
    from torch import nn

    class LossModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, batch: Any) -> torch.Tensor:
            return loss(self.inner, batch)

    return LossModule()


def _part(value: Any, rank: int, world: int) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] >= world:
        rows = value.shape[0]
        return value[rows * rank // world : rows * (rank + 1) // world]
    if isinstance(value, dict):
        return {key: _part(item, rank, world) for key, item in value.items()}
    return value


def _rows_of(batch: T, rank: int, world: int) -> T:
    """Rank ``rank``'s rows of a batch dataclass (see :meth:`DataParallel.split`)."""
    if not dataclasses.is_dataclass(batch) or isinstance(batch, type):
        raise TypeError(f"a batch to split must be a dataclass, not {type(batch).__name__}")
    parts = {f.name: _part(getattr(batch, f.name), rank, world) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **parts)  # type: ignore[type-var]


class SingleProcess:
    """The helper of a single process: everything passes through unchanged."""

    world_size = 1
    primary = True

    def loss(
        self, module: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor]
    ) -> Callable[[nn.Module, Any], torch.Tensor]:
        return loss

    def split(self, batches: Iterable[T]) -> Iterator[T]:
        yield from batches

    def shard(self, items: Iterable[T]) -> Iterator[T]:
        yield from items

    def sum(self, *values: float) -> tuple[float, ...]:
        return tuple(values)

    def from_primary(self, *values: float) -> tuple[float, ...]:
        return tuple(values)

    def close(self) -> None:
        return None


class DataParallel(SingleProcess):
    """The helper of one process of several (module docstring)."""

    def __init__(self, current: Launch, device: torch.device) -> None:
        self.rank = current.rank
        self.world_size = current.world_size
        self.primary = current.primary
        self.device = device
        self._wrapped: nn.Module | None = None

    def loss(
        self, module: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor]
    ) -> Callable[[nn.Module, Any], torch.Tensor]:
        """``loss`` computed through DistributedDataParallel (gradients averaged in backward)."""
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(_loss_module(module, loss), static_graph=True)
        self._wrapped = wrapped

        def distributed_loss(_: nn.Module, batch: Any) -> torch.Tensor:
            return wrapped(batch)

        return distributed_loss

    def split(self, batches: Iterable[T]) -> Iterator[T]:
        """This rank's part of every batch (a dataclass of tensors, dicts of tensors and others): rows
        ``[n * rank / N, n * (rank + 1) / N)`` of each tensor of ``n`` rows; a tensor with fewer rows
        than processes is kept whole by all. Every rank takes one step per batch."""
        for batch in batches:
            yield _rows_of(batch, self.rank, self.world_size)

    def shard(self, items: Iterable[T]) -> Iterator[T]:
        """This rank's share of ``items``, dealt round-robin (for sums over all ranks)."""
        for index, item in enumerate(items):
            if index % self.world_size == self.rank:
                yield item

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over all ranks."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tuple(float(v) for v in tensor.cpu())

    def from_primary(self, *values: float) -> tuple[float, ...]:
        """Rank 0's values, on every rank."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self._reduce_device())
        dist.broadcast(tensor, src=0)
        return tuple(float(v) for v in tensor.cpu())

    def close(self) -> None:
        """Drop the DistributedDataParallel wrapper (its hooks go with it)."""
        self._wrapped = None

    def _reduce_device(self) -> torch.device:
        import torch

        return self.device if self.device.type == "cuda" else torch.device("cpu")


def data_parallel(device: torch.device) -> SingleProcess:
    """The training helper for this process: :class:`DataParallel` under a ``torchrun`` launch of
    several processes (joining the process group), else :class:`SingleProcess`."""
    current = init_process_group(device)
    if current is None:
        return SingleProcess()
    return DataParallel(current, device)


def device_for(device: torch.device) -> torch.device:
    """The device this process trains on: a CUDA device without an index becomes the GPU of the
    process's ``LOCAL_RANK`` under a launch of several processes."""
    import torch

    current = launch()
    if current is not None and device.type == "cuda" and device.index is None:
        return torch.device("cuda", current.local_rank)
    return device


__all__ = [
    "DataParallel",
    "Launch",
    "SingleProcess",
    "data_parallel",
    "destroy_process_group",
    "device_for",
    "init_process_group",
    "is_primary",
    "launch",
    "process_group",
    "quiet_other_ranks",
]
