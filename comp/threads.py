"""Cap the CPU threads of this process: two comp processes on one machine must not each
take every core (two torch processes on 2 cores, uncapped, run 10-30× slower)."""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "POLARS_MAX_THREADS")


def cap_threads(n: int) -> None:
    """At most `n` threads for torch, BLAS, OpenMP (LightGBM) and polars. Libraries read
    these variables when they load, so this is called before any of them is imported;
    torch, if already loaded, is capped directly."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
