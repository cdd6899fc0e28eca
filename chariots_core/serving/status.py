"""The part of the status page's dict an app can tell without its store's history.

:func:`page_status` reports each pipeline the app serves: its DAG, whether it is loaded and
the version each loadable op serves. The newest saved versions, stale edges, jobs and
deployments need queries the op store answers (``app.status()`` adds them); the status page
(:func:`chariots_core.show.render_status_page`) shows whatever sections the dict has.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Chariots

__all__ = ["page_status", "short_version"]


def short_version(version: Any) -> str:
    """A version as the page and the command line show it: 7 characters of each subversion."""
    return "/".join(part[:7] for part in (version.major, version.minor, version.patch))


def page_status(app: Chariots) -> dict[str, Any]:
    """The status dict of ``app`` (shaped as :mod:`chariots_core.show.status_page` documents).

    Graphs are given as :class:`~chariots_core.show.Picture` objects, which the page takes as
    they are; call ``.to_dict()`` on them to send the dict as JSON.
    """
    pipelines = []
    for name in app.available_pipelines():
        serving = app.serving_pipeline(name)
        loaded = app.is_pipeline_loaded(name)
        versions = app.pipeline_versions(name)
        ops = [
            {"op": node.name, "serving": short_version(versions[node.name]) if loaded else None}
            for node in serving.loadable_nodes()
        ]
        pipelines.append({"name": name, "loaded": loaded, "graph": serving.picture(), "ops": ops})
    return {"title": f"Chariots: {', '.join(app.available_pipelines())}"[:120], "generated_at": time.time(), "pipelines": pipelines}
