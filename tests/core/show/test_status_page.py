"""The status page rendered from a status dict: sections, marks on the DAGs, escaping, bad input.

The page is parsed with the standard library's HTML parser: what a test reads is what a
browser would see as elements and text (the browser tests in tests/backends/waitress look at
it in Chromium).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from chariots_test_pictures import HOSTILE, node_groups, svg_tree

from chariots_core import Node, Pipeline
from chariots_core.errors import PictureError
from chariots_core.show import Lineage, OpVersion, render_status_page
from chariots_test_ops import AddOneOp, ScaleOp

IN, OUT = "__pipeline_input__", "__pipeline_output__"
T = 1_717_000_000.0


class Page(HTMLParser):
    """Tags, text and inline SVG documents of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.svgs: list[str] = []
        self._svg_start: int | None = None
        self._html = html
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def svgs_of(html: str) -> list[str]:
    pieces, start = [], 0
    while (begin := html.find("<svg", start)) != -1:
        end = html.index("</svg>", begin) + len("</svg>")
        pieces.append(html[begin:end])
        start = end
    return pieces


def model_pipeline(name: str = "pred", model_name: str = "scaleop") -> Pipeline:
    return Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="plus"),
        Node(ScaleOp(), input_nodes=["plus"], output_nodes="scaled", name=model_name),
        Node(AddOneOp(), input_nodes=["scaled"], output_nodes=OUT, name="after"),
    ], name)  # fmt: skip


def full_status(name: str = "pred", model_name: str = "scaleop") -> dict:
    return {
        "title": "my app",
        "generated_at": T,
        "pipelines": [
            {
                "name": name,
                "loaded": True,
                "graph": model_pipeline(name, model_name).picture().to_dict(),
                "ops": [{"op": model_name, "serving": "aaaaaaa/bbbbbbb/ccccccc", "newest": "ddddddd/bbbbbbb/ccccccc",
                         "newest_saved_at": T, "newest_pipeline": "train"}],  # fmt: skip
                "stale": [{"upstream": "addoneop", "downstream": model_name, "why": f"addoneop changed under {model_name}", "fix": "train"}],
            }
        ],
        "jobs": [{"job_id": "0123456789abcdef", "pipeline": "train", "status": "failed", "submitted_at": T, "error": "ValueError in x"}],
        "deployments": [{"pipeline": name, "at": T, "versions": {model_name: "aaaaaaa/bbbbbbb/ccccccc"}, "note": "rollback"}],
        "lineage": Lineage([OpVersion(model_name, "aaaaaaa/bbbbbbb/ccccccc", T, "train", serving=name, newest=True)]).to_dict(),
    }


def test_the_page_shows_every_section_of_the_dict():
    html = render_status_page(full_status())
    page = Page(html)
    text = page.all_text
    assert html.startswith("<!DOCTYPE html>") and "<title>my app</title>" in html
    for expected in ("1 pipeline", "1 stale edge", "loaded", "aaaaaaa/bbbbbbb/ccccccc", "ddddddd/bbbbbbb/ccccccc",
                     "behind the newest", "addoneop → scaleop", "addoneop changed under scaleop", "Run and save train",
                     "Recent deployments", "rollback", "Recent jobs", "0123456789ab", "ValueError in x", "Lineage of versions"):  # fmt: skip
        assert expected in text, expected
    assert len(svgs_of(html)) == 2  # the DAG and the lineage


def test_stale_edges_and_ops_behind_are_marked_on_the_dag():
    dag = svg_tree(svgs_of(render_status_page(full_status()))[0])
    classes = {group.get("class") for group in node_groups(dag)}
    assert "node loadable behind stale" in classes
    edges = [g for g in dag.iter("{http://www.w3.org/2000/svg}g") if g.get("class", "").startswith("edge")]
    assert [edge.get("class") for edge in edges] == ["edge", "edge stale", "edge", "edge"]  # only addoneop -> scaleop
    stale = next(edge for edge in edges if edge.get("class") == "edge stale")
    assert stale.find("{http://www.w3.org/2000/svg}title").text == "addoneop changed under scaleop"


def test_every_section_is_optional_but_the_pipeline_names():
    html = render_status_page({"pipelines": [{"name": "bare"}]})
    text = Page(html).all_text
    assert "bare" in text and "Recent jobs" not in text and "Stale" not in text and "<svg" not in html
    assert "0 pipelines" in Page(render_status_page({})).all_text


def test_a_hostile_name_is_text_everywhere_on_the_page():
    status = full_status(name="pred", model_name=HOSTILE)
    status["title"] = HOSTILE
    status["jobs"][0]["error"] = HOSTILE
    html = render_status_page(status)
    page = Page(html)
    assert "script" not in page.tags  # no element was injected
    assert page.all_text.count(HOSTILE.replace("\x01", "\ufffd")) >= 5  # title, ops table, stale, jobs, deployments
    for svg in svgs_of(html):
        svg_tree(svg)


def test_an_op_that_cannot_load_shows_why_and_the_fix_as_text():
    status = full_status()
    status["pipelines"][0]["ops"][0].update(newest=None, why=HOSTILE, fix=HOSTILE)
    html = render_status_page(status)
    page = Page(html)
    assert "script" not in page.tags
    text = page.all_text
    assert f"cannot load: {HOSTILE}. Run and save {HOSTILE}.".replace("\x01", "\ufffd") in text
    assert "behind the newest" not in text  # the op's why replaces its state


def test_a_malformed_status_names_each_wrong_key():
    status = full_status()
    status["pipelines"][0]["ops"][0]["newest_saved_at"] = "yesterday"
    status["jobs"][0]["status"] = None
    with pytest.raises(PictureError) as caught:
        render_status_page(status)
    message = str(caught.value)
    assert "expected a status dict shaped as chariots_core.show.status_page documents" in message
    assert "$.pipelines[0].ops[0].newest_saved_at" in message and "$.jobs[0].status" in message
    with pytest.raises(PictureError, match="got a list"):
        render_status_page([])
    with pytest.raises(PictureError, match=r"required field missing @ \$\.pipelines\[0\]\.name"):
        render_status_page({"pipelines": [{}]})


def test_a_status_that_travelled_as_json_renders_the_same():
    status = full_status()
    assert render_status_page(json.loads(json.dumps(status))) == render_status_page(status)
