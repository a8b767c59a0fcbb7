"""The writer: fills a store from any dataset generator, resumable, extendable, parallel.

    coordinator.py  render_store: take the store's writer lock, create or grow every array
                    before the fan-out, list the shards with missing (or damaged)
                    minibatches, fan them out, show progress, record the run
    cluster.py      where the tasks run: in this process, a local Dask cluster, or yours;
                    which failed tasks run again
    private_cluster.py  the local cluster, private to the run: TLS, no HTTP, logs in a file
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
