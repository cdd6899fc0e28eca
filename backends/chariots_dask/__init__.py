"""Run Chariots pipelines on a Dask ``distributed`` cluster.

    from dask.distributed import Client
    from chariots_dask import DaskWorkerPool

    pool = DaskWorkerPool(Client("tcp://scheduler:8786"))  # or DaskWorkerPool("tcp://scheduler:8786")
    app = Chariots(pipelines, path="s3://bucket/prefix", worker_pool=pool)
    job_id = app.call_pipeline("train", data, use_worker=True).job_id
    pool.wait(job_id).value
    app.map_pipeline("predict", many_inputs)  # in parallel over the cluster, in input order

Ops must be importable on the workers (install your package there, or define the ops in
``__main__``, which is sent by value). Install with ``pip install 'chariots[dask]'``.
"""

from .pool import DaskWorkerPool

__all__ = ["DaskWorkerPool"]
