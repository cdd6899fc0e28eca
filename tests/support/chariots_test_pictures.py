"""Helpers for the tests of pictures: random pictures, reading SVG, and required tools.

``require(tool, available, variable)`` skips a test when an outside tool (Graphviz, a browser)
is missing, unless the environment variable is ``1``: CI sets it, so there a missing tool
fails the run instead of passing it silently.
"""

from __future__ import annotations

import os
import random
import xml.etree.ElementTree as ET

import pytest

from chariots_core.show import Cluster, Picture, PictureEdge, PictureNode

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & "quotes" \\N \\ `tick` #35; end --> |pipe| [b] {c} \x01 ü 漢'


def require(tool: str, available: bool, variable: str) -> None:
    """Skip the test when ``tool`` is missing; fail instead when ``variable`` is set to 1."""
    if available:
        return
    message = f"{tool} is not installed"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{message}, and {variable}=1 requires it")
    pytest.skip(message)


def random_picture(seed: int, n_nodes: int, n_clusters: int = 0, title: str = "random") -> Picture:
    """A random DAG of ``n_nodes`` boxes (edges go from lower to higher index), some in nested frames."""
    rng = random.Random(seed)
    clusters = []
    for index in range(n_clusters):
        parent = f"c{rng.randrange(index)}" if index and rng.random() < 0.5 else None
        clusters.append(Cluster(f"c{index}", f"frame {index}", parent))
    kinds = ["op", "loadable", "data", "op"]
    nodes = [
        PictureNode(
            f"n{index}",
            f"node_{index}" + "x" * rng.randrange(12),
            rng.choice(kinds),
            rng.choice(["", "Detail", "AVeryLongClassName · fit_predict"]),
            f"c{rng.randrange(n_clusters)}" if n_clusters and rng.random() < 0.6 else None,
        )
        for index in range(n_nodes)
    ]
    edges = []
    for target in range(1, n_nodes):
        for source in rng.sample(range(target), k=min(target, rng.choice([1, 1, 1, 2, 3]))):
            edges.append(PictureEdge(f"n{source}", f"n{target}", rng.choice(["", f"v{source}", f"value_{source}"])))
    return Picture(title, nodes, edges, clusters)


def svg_tree(svg: str) -> ET.Element:
    """The parsed SVG document (the test fails if it is not well-formed XML)."""
    return ET.fromstring(svg)


def node_groups(root: ET.Element) -> list[ET.Element]:
    """The ``<g class="node ...">`` elements of a parsed SVG."""
    return [group for group in root.iter(f"{SVG}g") if group.get("class", "").split()[:1] == ["node"]]


def texts(element: ET.Element) -> list[str]:
    """Every text drawn inside ``element`` (not tooltips)."""
    return ["".join(text.itertext()) for text in element.iter(f"{SVG}text")]
