"""Drawing a pipeline: Chariots's own SVG layout against Graphviz and dagre, for 20 and 200 ops.

The contenders draw the same pipelines (a chain with a branch joining back every third node,
one op in four loadable):

- ``chariots``: ``render(pipeline, "svg")``: picture, layout and SVG, in process, pure Python;
- ``graphviz``: ``dot -Tsvg`` on ``pipeline.to_dot()`` (a process per drawing, as the
  ``graphviz`` package runs it), when the ``dot`` binary is installed;
- ``dagre``: the dagre JS layout alone (no drawing) in Node.js, when ``node`` and dagre are
  here (``DAGRE_JS=/path/to/dagre.js``); the time is measured inside Node, start-up excluded.

Reported: median seconds over the repeats, the output size, and each time as a ratio to
Chariots's. Run: ``python benchmarks/bench_pictures.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from chariots_core import BaseOp, LoadableOp, Node, Pipeline
from chariots_core.show import render


class Step(BaseOp):
    """A plain op."""

    def execute(self, *values: Any) -> Any:
        return values


class Model(LoadableOp):
    """A loadable op (with no state worth saving)."""

    def execute(self, *values: Any) -> Any:
        return values

    def serialize(self) -> bytes:
        return b""

    def load(self, serialized_object: bytes) -> None:
        pass


def bench_pipeline(name: str, n_ops: int, model: Callable[[], BaseOp] = Model) -> Pipeline:
    """A chain of ``n_ops`` ops where every third op also takes the value from two steps back
    (every fourth op is made by ``model``)."""
    nodes = [Node(Step(), input_nodes=["__pipeline_input__"], output_nodes="v0", name=f"{name}_op0")]
    for index in range(1, n_ops):
        inputs = [f"v{index - 1}"] + ([f"v{index - 2}"] if index % 3 == 0 and index >= 2 else [])
        op = model() if index % 4 == 0 else Step()
        output = "__pipeline_output__" if index == n_ops - 1 else f"v{index}"
        nodes.append(Node(op, input_nodes=inputs, output_nodes=output, name=f"{name}_op{index}"))
    return Pipeline(nodes, name)


def timed(action: Any, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def dagre_seconds(pipeline: Pipeline, dagre_js: str, repeats: int) -> float:
    """Median time of ``dagre.layout`` on the pipeline's boxes and arrows, measured inside Node."""
    picture = pipeline.picture()
    graph = {"nodes": [node.id for node in picture.nodes], "edges": [[edge.source, edge.target] for edge in picture.edges]}
    script = f"""
const dagre = require({json.dumps(dagre_js)});
const data = {json.dumps(graph)};
const times = [];
for (let repeat = 0; repeat < {repeats}; repeat++) {{
  const start = process.hrtime.bigint();
  const g = new dagre.graphlib.Graph();
  g.setGraph({{rankdir: "LR"}}); g.setDefaultEdgeLabel(() => ({{}}));
  for (const id of data.nodes) g.setNode(id, {{width: 120, height: 38}});
  for (const [s, t] of data.edges) g.setEdge(s, t);
  dagre.layout(g);
  times.push(Number(process.hrtime.bigint() - start) / 1e9);
}}
times.sort((a, b) => a - b);
console.log(times[Math.floor(times.length / 2)]);
"""
    with tempfile.NamedTemporaryFile("w", suffix=".js", delete=False) as handle:
        handle.write(script)
    try:
        return float(subprocess.run(["node", handle.name], capture_output=True, text=True, check=True, timeout=600).stdout)
    finally:
        os.unlink(handle.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    dagre_js = os.environ.get("DAGRE_JS", "")
    print(f"{'ops':>4}  {'contender':<9} {'median s':>9} {'size KiB':>9} {'ratio':>6}")
    for n_ops in (20, 200):
        pipeline = bench_pipeline(f"p{n_ops}", n_ops)
        ours, svg = timed(lambda: render(pipeline, "svg"), args.repeats)
        print(f"{n_ops:>4}  {'chariots':<9} {ours:>9.4f} {len(svg.encode()) / 1024:>9.1f} {1.0:>6.2f}")
        if shutil.which("dot"):
            dot = pipeline.to_dot().encode()
            seconds, output = timed(lambda: subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, check=True).stdout, args.repeats)
            print(f"{n_ops:>4}  {'graphviz':<9} {seconds:>9.4f} {len(output) / 1024:>9.1f} {seconds / ours:>6.2f}")
        else:
            print(f"{n_ops:>4}  graphviz  (dot not installed)")
        if dagre_js and shutil.which("node"):
            seconds = dagre_seconds(pipeline, dagre_js, args.repeats)
            print(f"{n_ops:>4}  {'dagre':<9} {seconds:>9.4f} {'(layout)':>9} {seconds / ours:>6.2f}")
        else:
            print(f"{n_ops:>4}  dagre     (set DAGRE_JS and install node to compare)")


if __name__ == "__main__":
    main()
