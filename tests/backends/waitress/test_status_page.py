"""GET / serves the status page: over real HTTP from waitress, and in a real headless Chromium.

The browser tests need Playwright and Chromium; they skip without them, and fail instead when
``CHARIOTS_REQUIRE_BROWSER=1`` (CI sets it). A hostile op name checks that the page escapes
user strings: it must show as text, create no element, run nothing, and log no error.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from chariots_test_browser import launch_browser
from chariots_test_explain import iris_pipelines, pca_class, train

from chariots_core import BaseNode, BaseOp, Chariots, MemoryOpStore, MemorySaver, Node, Pipeline
from chariots_core.serving.status import page_status
from chariots_core.show import render_status_page
from chariots_core.show.layout import LABEL_LIMIT
from chariots_core.show.text import shorten

IN, OUT = "__pipeline_input__", "__pipeline_output__"
HOSTILE = "<script>window.__pwned = 1; alert('pwned')</script><img src=x onerror=\"window.__pwned = 2\">"


class Echo(BaseOp):
    def execute(self, value: Any) -> Any:
        return value


def hostile_pipeline() -> Pipeline:
    return Pipeline([Node(Echo(), input_nodes=[IN], output_nodes=OUT, name=HOSTILE)], "hostile")


def get(url: str, method: str = "GET", path: str = "/") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def page_server(kit, start_server):
    app = kit.make_app(extra=[hostile_pipeline()])
    app.call_pipeline("train_centerer")
    app.save_pipeline("train_centerer")
    app.load_pipeline("train_model")
    app.call_pipeline("train_model")
    app.save_pipeline("train_model")
    app.load_pipeline("pred")
    yield app, start_server(app)
    app.close()


# -- over HTTP -------------------------------------------------------------------------------
def test_get_root_answers_the_page_as_html_with_a_strict_policy(page_server):
    app, server = page_server
    status, headers, body = get(server.url)
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"] and "script-src" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    html = body.decode()
    assert int(headers["content-length"]) == len(body)
    for name in app.available_pipelines():
        assert f">{name}<" in html or name == "hostile"
    assert html.count("<svg") == len(app.available_pipelines())
    pred_versions = app.pipeline_versions("pred")
    centerer = pred_versions["centerer"]
    assert "/".join(part[:7] for part in (centerer.major, centerer.minor, centerer.patch)) in html  # what pred serves


def test_head_answers_headers_only_and_other_methods_405(page_server):
    _, server = page_server
    status, headers, body = get(server.url, "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, headers, body = get(server.url, "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert json.loads(body)["error"]["message"] == "POST is not allowed on '/'; the status page is read-only, use GET"


def test_the_json_routes_still_answer_json(page_server):
    _, server = page_server
    status, headers, body = get(server.url, path="/available_pipelines")
    assert status == 200 and headers["content-type"] == "application/json" and "hostile" in json.loads(body)["pipelines"]


class Broken(BaseNode):
    """A node whose version cannot be computed: drawing it fails."""

    @property
    def name(self) -> str:
        return "broken"

    @property
    def node_version(self):
        raise RuntimeError("this node has no version")

    def execute(self, *params: Any) -> Any:
        return None


def test_a_page_that_cannot_be_drawn_answers_a_json_error(kit, start_server):
    app = kit.make_app(extra=[Pipeline([Broken(input_nodes=[IN], output_nodes=OUT)], "broken")])
    with app:
        status, headers, body = get(start_server(app).url)
    assert status == 500 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == {"type": "RuntimeError", "message": "this node has no version"}


# -- in a browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module's tests (starting one takes seconds)."""
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    """A fresh page, in a context of its own (no state shared between tests)."""
    context = browser.new_context()
    yield context.new_page()
    context.close()


def watch(page: Any) -> dict[str, list[str]]:
    """Record the dialogs a page opens and the errors it logs."""
    seen: dict[str, list[str]] = {"dialogs": [], "errors": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda message: seen["errors"].append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    return seen


def assert_nothing_ran(page: Any, seen: dict[str, list[str]]) -> None:
    assert seen == {"dialogs": [], "errors": []}
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('script, img, iframe, object, embed').length") == 0


def test_the_browser_shows_every_pipeline_with_its_dag(page_server, page):
    app, server = page_server
    seen = watch(page)
    assert page.goto(server.url).status == 200
    sections = page.locator("section.pipeline")
    assert sections.count() == len(app.available_pipelines())
    for index, name in enumerate(app.available_pipelines()):
        section = sections.nth(index)
        assert section.locator("h2").inner_text().startswith(name)
        svg = section.locator("svg")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box["width"] > 50 and box["height"] > 20  # drawn, not an empty element
        expected = {shorten(node.label, LABEL_LIMIT) for node in app.serving_pipeline(name).picture().nodes}
        drawn = set(svg.locator("g.node > text:first-of-type").all_text_contents())
        assert expected == drawn
    assert_nothing_ran(page, seen)


def test_a_script_in_an_op_name_shows_as_text_and_runs_nowhere(page_server, page):
    _, server = page_server
    seen = watch(page)
    page.goto(server.url)
    hostile = page.locator("section.pipeline", has_text="hostile")
    tooltips = hostile.locator("g.node > title").evaluate_all("titles => titles.map(title => title.textContent)")
    assert any(tooltip.startswith(HOSTILE + "\n") for tooltip in tooltips)  # the whole name, as text
    labels = hostile.locator("g.node > text:first-of-type").all_text_contents()
    assert shorten(HOSTILE, LABEL_LIMIT) in labels  # shortened on the box, as text
    assert_nothing_ran(page, seen)


def test_the_escaping_alone_keeps_scripts_out_without_the_servers_policy(page_server, page):
    # set_content loads the page without the Content-Security-Policy header: nothing but the
    # escaping stands between the hostile name and the page.
    app, _ = page_server
    status = page_status(app)
    status["title"] = HOSTILE
    status["pipelines"][-1]["stale"] = [{"upstream": HOSTILE, "downstream": HOSTILE, "why": HOSTILE, "fix": HOSTILE}]
    status["jobs"] = [{"job_id": HOSTILE, "pipeline": HOSTILE, "status": HOSTILE, "error": HOSTILE}]
    seen = watch(page)
    page.set_content(render_status_page(status))
    assert page.title() == HOSTILE
    assert page.locator("ul.stale li").inner_text().count("window.__pwned = 1") == 4  # up, down, why, fix
    assert page.locator("h1").inner_text() == HOSTILE
    assert_nothing_ran(page, seen)


def test_a_stale_edge_shows_its_why_and_hostile_fields_stay_text(browser, start_server):
    """The why is made of strings users wrote: here a field's key and its values."""
    store, saver = MemoryOpStore(), MemorySaver()
    with Chariots(list(iris_pipelines(pca_class(**{HOSTILE: HOSTILE + "1"}))), op_store=store, saver=saver) as old:
        train(old, "train_iris")
        old.load_pipeline("pred_iris")
    with Chariots(list(iris_pipelines(pca_class(**{HOSTILE: HOSTILE + "2"}))), op_store=store, saver=saver) as app:
        train(app, "train_pca")
        [edge] = app.why_stale("pred_iris").edges
        assert edge.why.count("window.__pwned = 1") == 3 and edge.fix == "train_iris"  # key, old and new value
        context = browser.new_context()
        try:
            page = context.new_page()
            seen = watch(page)
            page.goto(start_server(app).url)
            section = page.locator("section.pipeline", has_text="pred_iris")
            item = section.locator("ul.stale li")
            assert item.count() == 1
            shown = item.inner_text()
            assert shown.startswith("irispca → irisrf: ")
            assert f"{edge.why}. Run and save train_iris." in shown  # the why and the fix, as text
            tooltips = section.locator("g.edge > title").evaluate_all("titles => titles.map(title => title.textContent)")
            assert edge.why in tooltips  # the stale arrow of the DAG carries the why too
            assert "1 stale edge" in page.locator("p.muted").first.inner_text()
            assert_nothing_ran(page, seen)
        finally:
            context.close()
