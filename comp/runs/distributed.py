"""The processes of one `comp run`: one, or several under `accelerate launch` / `torchrun`.

Every process trains each fold together (DDP through accelerate); only the main process
touches the run store (creates the run, takes fold locks, writes outputs), and it tells
the others what it decided, so they never disagree about which fold to train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Processes:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(rank=state.process_index, world_size=state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Tear the process group down before the interpreter exits: left to exit-time
        destructors, gloo's threads can abort a finished process (SIGABRT, "terminate called
        without an active exception")."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def share(self, value: T) -> T:
        """The main process's `value`, on every process (a barrier as well)."""
        if self.world_size == 1:
            return value
        from accelerate.utils import broadcast_object_list

        box: list[Any] = [value if self.is_main else None]
        broadcast_object_list(box, from_process=0)
        return box[0]
