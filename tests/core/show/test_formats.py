"""DOT and Mermaid text: shapes by kind, marks, nesting, and names escaped for each format.

Graphviz (when installed; CI requires it) proves the DOT parses and shows every name as given.
Mermaid is checked by the rule its labels follow; with ``CHARIOTS_MERMAID_JS`` pointing to a
``mermaid.min.js`` and a browser, the real Mermaid parses and draws them too.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import pytest
from chariots_test_pictures import HOSTILE, random_picture, require

from chariots_core.errors import ChariotsError, ConfigError, PictureError
from chariots_core.show import Cluster, Picture, PictureEdge, PictureNode, render
from chariots_core.show.dot import dot_string, to_dot
from chariots_core.show.mermaid import mermaid_text, to_mermaid

SHOWN = HOSTILE.replace("\x01", "\ufffd")  # what any format shows for HOSTILE


def hostile_picture() -> Picture:
    nodes = [
        PictureNode("a", HOSTILE, "loadable", detail=HOSTILE, cluster="c", tooltip=HOSTILE),
        PictureNode("b", "end", "data", marks=("serving", "newest")),
        PictureNode("c2", "graph", "output", marks=("stale",)),
    ]
    edges = [PictureEdge("a", "b", HOSTILE, tooltip=HOSTILE), PictureEdge("b", "c2", marks=("stale",))]
    return Picture(HOSTILE, nodes, edges, [Cluster("c", HOSTILE, tooltip=HOSTILE)])


# -- DOT -------------------------------------------------------------------------------------
def test_dot_strings_escape_quotes_and_backslashes():
    assert dot_string('say "hi" \\N') == '"say \\"hi\\" \\\\N"'
    assert dot_string("two", "lines") == '"two\\nlines"'
    assert dot_string("bell\x07") == '"bell\ufffd"'


def test_dot_has_a_statement_per_node_and_edge_and_nests_clusters():
    picture = random_picture(3, 20, 4)
    dot = to_dot(picture)
    assert dot.startswith('digraph "random" {') and dot.rstrip().endswith("}")
    assert len(re.findall(r'^\s*"n\d+" \[label=', dot, re.M)) == 20
    assert len(re.findall(r'^\s*"n\d+" -> "n\d+"', dot, re.M)) == len(picture.edges)
    assert dot.count("subgraph") == 4
    assert dot.count("{") == dot.count("}")


def test_dot_tells_kinds_and_marks_apart():
    dot = to_dot(hostile_picture())
    lines = {line.split(" [")[0].strip(): line for line in dot.splitlines() if " [label=" in line}
    assert "peripheries=2" in lines['"a"'] and "shape=box" in lines['"a"']
    assert "shape=cylinder" in lines['"b"'] and "color=darkgreen" in lines['"b"'] and "filled" in lines['"b"']
    assert "red3" in lines['"c2"']
    assert re.search(r'"b" -> "c2" \[.*style=dashed', dot)


def dot_texts(dot: str) -> list[str]:
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True, timeout=60).stdout.decode()
    return [html.unescape(text) for text in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_graphviz_parses_the_dot_and_shows_every_name_as_given():
    require("Graphviz (dot)", shutil.which("dot") is not None, "CHARIOTS_REQUIRE_GRAPHVIZ")
    shown = dot_texts(to_dot(hostile_picture()))
    assert shown.count(SHOWN) == 5  # title, cluster, node label and detail, edge label
    assert "end" in shown and "graph" in shown


def test_graphviz_draws_a_large_random_picture():
    require("Graphviz (dot)", shutil.which("dot") is not None, "CHARIOTS_REQUIRE_GRAPHVIZ")
    picture = random_picture(4, 60, 6)
    shown = dot_texts(to_dot(picture))
    assert {node.label for node in picture.nodes} <= set(shown)


# -- Mermaid ---------------------------------------------------------------------------------
def decode_mermaid(text: str) -> str:
    return re.sub(r"#(\d+);", lambda match: chr(int(match.group(1))), text)


@pytest.mark.parametrize("name", [HOSTILE, "plain_name-1.2", "end", "#35;", "a\nb", '"]]; click a call x()'])
def test_mermaid_labels_hold_only_safe_characters_and_decode_to_the_name(name):
    text = mermaid_text(name)
    assert re.fullmatch(r"[\w .,:/#;-]*", text), text
    assert not re.search(r"[\"'<>\[\]{}()|`]", text)
    assert decode_mermaid(text) == name.replace("\x01", "\ufffd").replace("\n", "\ufffd")


def test_mermaid_uses_generated_ids_shapes_by_kind_and_classes_for_marks():
    mermaid = to_mermaid(hostile_picture())
    assert mermaid.splitlines()[3] == "flowchart LR"
    assert re.search(r'^\s+n0\[\["', mermaid, re.M)  # loadable: a subroutine box
    assert re.search(r'^\s+n1\[\("', mermaid, re.M)  # data: a cylinder
    assert re.search(r'^\s+n2\(\["', mermaid, re.M)  # output: a stadium
    assert re.search(r"^\s+subgraph c0 \[\"", mermaid, re.M) and re.search(r"^\s+end$", mermaid, re.M)
    assert "class n1 serving" in mermaid and "class n2 stale" in mermaid
    assert re.search(r"linkStyle 1 stroke:#c62828", mermaid)
    assert "<script" not in mermaid and "alert(" not in mermaid


def test_the_real_mermaid_parses_and_draws_the_flowchart():
    script = os.environ.get("CHARIOTS_MERMAID_JS", "")
    if not script:
        pytest.skip("set CHARIOTS_MERMAID_JS to a mermaid.min.js to check the text with Mermaid itself")
    from chariots_test_browser import open_browser

    with open_browser() as page:
        page.set_content("<html><body></body></html>")
        page.add_script_tag(path=script)
        page.evaluate("mermaid.initialize({startOnLoad: false})")
        for index, picture in enumerate([hostile_picture(), random_picture(3, 20, 4)]):
            svg = page.evaluate("async ([id, text]) => (await mermaid.render(id, text)).svg", [f"m{index}", to_mermaid(picture)])
            assert "<script" not in svg
            for node in picture.nodes:
                assert html.escape(node.label.replace("\x01", "\ufffd"), quote=False) in svg.replace("&quot;", '"')


# -- render() --------------------------------------------------------------------------------
def test_render_knows_four_formats_and_refuses_others():
    picture = random_picture(1, 5)
    outputs = {name: render(picture, name) for name in ("dot", "mermaid", "svg", "html")}
    assert outputs["dot"].startswith("digraph")
    assert "flowchart LR" in outputs["mermaid"]
    assert outputs["svg"].startswith("<svg")
    assert outputs["html"].startswith("<!DOCTYPE html>") and "<svg" in outputs["html"] and "<script" not in outputs["html"]
    with pytest.raises(ConfigError, match=r"'format' must be one of dot, mermaid, svg, html \(got 'png'\)"):
        render(picture, "png")


def test_render_combines_a_list_into_one_picture_with_a_frame_each():
    dot = render([random_picture(1, 4, title="first"), random_picture(2, 3, title="second")], "dot", title="both")
    assert dot.startswith('digraph "both"') and dot.count("subgraph") == 2
    assert 'label="first"' in dot and 'label="second"' in dot


def test_render_refuses_what_it_cannot_draw():
    with pytest.raises(PictureError, match=r"cannot draw 42: give a Pipeline, a Lineage, a Picture"):
        render(42, "svg")
    assert issubclass(PictureError, ChariotsError) and issubclass(PictureError, ValueError)
