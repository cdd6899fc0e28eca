"""Worker pools of real processes for Chariots, on ``multiprocess`` (dill-based multiprocessing).

    from chariots_multiprocess import MultiprocessWorkerPool

    with MultiprocessWorkerPool(n_workers=2) as pool:
        app = Chariots(pipelines, worker_pool=pool)
        job_id = app.call_pipeline("train", use_worker=True).job_id
        app.fetch_job(job_id).job_status
        values = app.map_pipeline("predict", rows)  # in chunks, no job records

Install with ``pip install 'chariots[workers]'``.
"""

from .pool import MultiprocessWorkerPool

__all__ = ["MultiprocessWorkerPool"]
