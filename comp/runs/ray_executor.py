"""`--executor ray`: each fold a Ray task with declared resources.

A task gets its job and the run's data (train and test tables, corpus, the parent runs'
arrays, put in Ray's object store once per run) from the driver, never a path into
runs/, and sends its outputs back; the driver alone writes the store. So workers need no
shared file system, and a fold trained on Ray is the same computation as a local one.
Ray is imported only here, only by the commands that ask for it.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comp.data.config import ExecutorConfig
from comp.errors import CompError
from comp.runs.fold import FoldData, FoldFailure, FoldJob, FoldResult, train_fold
from comp.threads import cap_threads


@dataclass(frozen=True)
class WorkerLost:
    """The task's worker process or node died: the fold is trained again (bounded)."""

    fold: int
    reason: str


class RayExecutor:
    """Submits fold jobs to a Ray cluster: `config.address`, or the one this process is
    already connected to, or a private one started on this machine for the command."""

    def __init__(self, config: ExecutorConfig):
        try:
            import ray
        except ImportError:
            raise CompError("--executor ray needs Ray: pip install 'comp[scale]'") from None
        self._ray, self.config = ray, config
        self._owns_cluster = not ray.is_initialized()
        if self._owns_cluster:
            self._connect()
        self._check_resources()
        self._task = ray.remote(_train_fold_task).options(
            num_cpus=config.cpus_per_fold, num_gpus=config.gpus_per_fold,
            max_retries=0,  # retried by the driver, so each retry is counted in run.json
        )
        # Through Ray Client (ray://) this process is on no node of the cluster: every
        # worker then keeps its scratch files to itself.
        from ray.util.client import ray as client

        self.driver_node = None if client.is_connected() else ray.get_runtime_context().get_node_id()

    def _connect(self) -> None:
        ray, address = self._ray, self.config.address
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or "a new local cluster"
            raise CompError(f"could not connect to Ray at {where}: {str(error).splitlines()[0]}") from None

    def _check_resources(self) -> None:
        """A fold that no node can hold would wait forever: refuse it before the run exists."""
        total = self._ray.cluster_resources()
        asked = {"CPU": self.config.cpus_per_fold, "GPU": self.config.gpus_per_fold}
        for resource, amount in asked.items():
            if amount > total.get(resource, 0):
                flag = f"--{resource.lower()}s-per-fold"
                raise CompError(f"{flag} {amount:g} asks for more than the Ray cluster has "
                                f"({total.get(resource, 0):g} {resource})")

    def ship(self, data: FoldData) -> Any:
        """The run's data in the object store, once; every fold task reads that copy."""
        return self._ray.put(data)

    def submit(self, job: FoldJob, data_ref: Any) -> Any:
        return self._task.remote(job, data_ref, self.driver_node, self.config.cpus_per_fold)

    def wait(self, handles: list[Any]) -> list[Any]:
        """At least one finished handle (blocks until one is)."""
        done, _ = self._ray.wait(handles, num_returns=1)
        return done

    def outcome(self, handle: Any, fold: int) -> FoldResult | FoldFailure | WorkerLost:
        ray = self._ray
        try:
            return ray.get(handle)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError, ray.exceptions.LocalRayletDiedError) as error:
            return WorkerLost(fold, f"{type(error).__name__}")
        except ray.exceptions.TaskCancelledError:
            return FoldFailure(fold, f"fold {fold}: cancelled")
        except ray.exceptions.RayError as error:
            first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            return FoldFailure(fold, f"fold {fold}: Ray failed the task: {first}")

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=True)

    def close(self) -> None:
        if self._owns_cluster:
            self._ray.shutdown()


def _train_fold_task(job: FoldJob, data: FoldData, driver_node: str | None, cpus: int
                     ) -> FoldResult | FoldFailure:
    """Runs in a Ray worker. Scratch files (checkpoints, caches) go where the driver's are
    when the worker shares its machine, else to a temporary folder of the worker's."""
    import ray
    from rich.console import Console
    from threadpoolctl import threadpool_info, threadpool_limits

    from comp.progress import Reporter

    cap_threads(cpus)
    node = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory(prefix="comp-fold-") as scratch:
        if node != driver_node:
            local = Path(scratch)
            job = dataclasses.replace(job, workdir=local / "fold", run_workdir=local / "run",
                                      cache=local / "cache")
        job.workdir.mkdir(parents=True, exist_ok=True)
        with threadpool_limits(cpus), Reporter.open(Console(file=io.StringIO()), quiet=True) as quiet:
            outcome = train_fold(job, data, quiet)
            blas = max((pool["num_threads"] for pool in threadpool_info()), default=None)
    if isinstance(outcome, FoldFailure):
        return outcome
    torch = sys.modules.get("torch")
    placement = {
        "executor": "ray", "node": node, "pid": os.getpid(), "cpus": cpus,
        "gpus": [str(g) for g in ray.get_gpu_ids()],
        "threads": {"blas": blas, "torch": torch.get_num_threads() if torch else None},
    }
    return dataclasses.replace(outcome, placement=placement)
