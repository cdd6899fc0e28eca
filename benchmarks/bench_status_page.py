"""The status page for 50 pipelines of 20 ops: server render time and browser load time.

An app (memory storage) serves 50 pipelines of 20 ops each (a chain with branches, one op in
four a model), loaded with the models a training app saved, except every fifth pipeline, where
the op feeding the first model has new code (a field added): those cannot load, and the page
explains their stale edge. 20 jobs (one in four failed) are recorded. Measured, as medians over
the repeats:

- **server render**: ``render_status_page(page_status(app))``, cold (every DAG laid out) and
  warm (the same DAGs again: their SVG is cached by value);
- **browser load**: headless Chromium (Playwright, the system's chromium) loading ``GET /``
  from waitress on 127.0.0.1: navigation start to the load event, server time included;
  against the **floor**, the same browser loading a 1 KiB static page from the same server.

Target: the 50 x 20 page loads in under 1 s. Run:
``python benchmarks/bench_status_page.py [--repeats 7] [--pipelines 50] [--ops 20]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from chariots_core import Chariots, JobStatus, MemoryOpStore, MemorySaver, VersionedField, VersionType
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.serving.status import page_status
from chariots_core.show import render_status_page
from chariots_core.show import status_page as status_page_module

sys.path.insert(0, os.path.dirname(__file__))
from bench_pictures import Step, bench_pipeline  # noqa: E402

TARGET_SECONDS = 1.0
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
FLOOR_PAGE = ("<!DOCTYPE html><html><head><title>floor</title></head><body>" + "<p>floor</p>" * 70 + "</body></html>").encode()


class BenchModel(BaseMLOp):
    """A model that learns nothing: each fit is a training run (a new MAJOR version)."""

    training_update_version = VersionType.MAJOR

    def fit(self, *values: Any) -> None:
        self._model = len(values)

    def predict(self, *values: Any) -> Any:
        return values


class EditedStep(Step):
    """A plain op edited since the models behind it were trained."""

    scale = VersionedField(2, VersionType.MAJOR)


def big_app(n_pipelines: int, n_ops: int) -> Chariots:
    """The served app of the module docstring (its pipelines loaded, some stale, jobs recorded)."""
    names = [f"pipeline{index}" for index in range(n_pipelines)]
    store, saver = MemoryOpStore(), MemorySaver()
    with Chariots([bench_pipeline(name, n_ops, lambda: BenchModel(MLMode.FIT_PREDICT)) for name in names], op_store=store, saver=saver) as trainer:
        for name in names:
            trainer.call_pipeline(name, 1)
            trainer.save_pipeline(name)
    served = [bench_pipeline(name, n_ops, lambda: BenchModel(MLMode.PREDICT)) for name in names]
    changed = {name for name in names[::5]}
    served = [pipeline.replace_ops({f"{pipeline.name}_op3": EditedStep()}) if pipeline.name in changed else pipeline for pipeline in served]
    app = Chariots(served, op_store=store, saver=saver)
    for name in names:  # loaded pipelines report what they serve
        if name not in changed:
            app.load_pipeline(name)
    for index in range(20):
        job = app.jobs.new(names[index % n_pipelines])
        app.jobs.mark(job, JobStatus.failed, error={"type": "ValueError", "message": "bad input"}) if index % 4 == 0 else app.jobs.mark(job, JobStatus.done)
    return app


def with_floor(wsgi: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``wsgi``, plus ``GET /floor`` answering a static page, and ``GET /cold`` answering ``/``
    (the benchmark forgets the cached DAG drawings before each load of ``/cold``)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/floor":
            start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(FLOOR_PAGE)))])
            return [FLOOR_PAGE]
        if environ.get("PATH_INFO") == "/cold":
            environ = {**environ, "PATH_INFO": "/"}
        return wsgi(environ, start_response)

    return app


def median_seconds(action: Callable[[], Any], repeats: int, before: Callable[[], Any] = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def browser_loads(url: str, paths: list[str], repeats: int, before: Callable[[str], Any]) -> dict[str, float]:
    """Median navigation-start-to-load-event seconds of each path, the paths taking turns.

    :param before: called with the path before each load.
    """
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHARIOTS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    times: dict[str, list[float]] = {path: [] for path in paths}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page()
        page.goto(url + paths[0])  # warm the browser up once
        for _ in range(repeats):
            for path in paths:
                before(path)
                page.goto(url + path, wait_until="load")
                timing = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
                entry = json.loads(timing)
                times[path].append((entry["loadEventEnd"] - entry["startTime"]) / 1000)
        browser.close()
    return {path: statistics.median(values) for path, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--ops", type=int, default=20)
    args = parser.parse_args()
    app = big_app(args.pipelines, args.ops)
    html = render_status_page(page_status(app))
    stale = sum(len(pipeline["stale"]) for pipeline in app.status()["pipelines"])
    cold = median_seconds(lambda: render_status_page(page_status(app)), args.repeats, status_page_module._svg.cache_clear)
    warm = median_seconds(lambda: render_status_page(page_status(app)), args.repeats)
    status_only = median_seconds(lambda: page_status(app), args.repeats)
    print(f"page of {args.pipelines} pipelines x {args.ops} ops: {len(html.encode()) / 1024:.0f} KiB, {html.count('<svg')} SVGs, {stale} stale edges")
    print(f"server: page_status {status_only * 1000:.1f} ms; render cold {cold * 1000:.1f} ms, warm {warm * 1000:.1f} ms")
    try:
        from chariots_waitress import ServerThread, make_wsgi_app
    except ImportError:
        print("browser: chariots_waitress (waitress) is not installed")
        return
    if importlib.util.find_spec("playwright") is None:
        print("browser: playwright is not installed (pip install playwright; apt-get install chromium)")
        return

    def forget_drawings(path: str) -> None:
        if path == "/cold":
            status_page_module._svg.cache_clear()

    server = ServerThread(with_floor(make_wsgi_app(app)))
    try:
        loads = browser_loads(server.url, ["/floor", "/", "/cold"], args.repeats, forget_drawings)
    finally:
        server.stop()
        app.close()
    floor = loads["/floor"]
    for label, path in (("status page (DAG drawings cached)", "/"), ("status page (every DAG drawn anew)", "/cold")):
        seconds = loads[path]
        verdict = "under" if seconds < TARGET_SECONDS else "OVER"
        print(f"browser: {label} {seconds * 1000:.0f} ms, floor (static 1 KiB page) {floor * 1000:.0f} ms, "
              f"ratio {seconds / floor:.1f}x; {verdict} the {TARGET_SECONDS:.0f} s target")  # fmt: skip


if __name__ == "__main__":
    main()
