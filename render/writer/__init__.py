"""The writer: fills a store from any dataset generator, resumable, extendable, parallel.

    coordinator.py  render_store: take the store's writer lock, create or grow every array
                    before the fan-out, list the shards with missing (or damaged)
                    minibatches, fan them out, show progress, record the run
    local_pool.py   tasks on this machine: in this process, or on a pool of worker
                    processes (their output in a log file)
    cluster.py      tasks on your Dask cluster (--scheduler)
    failures.py     what a failed task means: the disk's, ours, a dead worker; which run again
    shards.py       the one task: render one shard and write it whole, markers last
"""

from .coordinator import (
    RenderRequest,
    RenderSummary,
    check_counts,
    plan_shards,
    render_store,
    repair_shards,
)
from .shards import rasteriser_threads

__all__ = ["RenderRequest", "RenderSummary", "check_counts", "plan_shards", "rasteriser_threads",
           "render_store", "repair_shards"]
