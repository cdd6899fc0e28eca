"""``chariots status`` and ``chariots dag``, end to end in subprocesses on a real LMDB store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[2] / "support"
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
PROJECT = """\
from chariots_test_explain import iris_pipelines, pca_class

PIPELINES = list(iris_pipelines(pca_class(n_components={n})))
"""


def run(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "chariots_core.project.cli", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=120, env=ENV)  # fmt: skip
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture
def project(tmp_path):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    (tmp_path / "iris_project.py").write_text(PROJECT.format(n=2), encoding="utf-8")
    (tmp_path / "chariots.toml").write_text('[op_store]\npath = "data"\n\n[pipelines]\nimport_path = "iris_project:PIPELINES"\n')
    return tmp_path


def stale_project(project: Path) -> Path:
    """train_iris saved, pred_iris loaded (held), then only the PCA retrained and saved."""
    for args in (["call", "train_iris", "--quiet"], ["save", "train_iris"], ["load", "pred_iris"],
                 ["call", "train_pca", "--quiet"], ["save", "train_pca"]):  # fmt: skip
        run(project, *args)
    return project


def test_status_explains_the_stale_edge_and_what_each_pipeline_serves(project):
    out = run(stale_project(project), "status").stdout
    lines = out.splitlines()
    assert lines[0] == "pipeline 'train_iris' - served as held by the last call or load"
    pred = lines.index("pipeline 'pred_iris' - served as held by the last call or load; 1 stale edge(s)")
    assert lines[pred + 1].split() == ["OP", "SERVING", "NEWEST", "SAVED", "SAVED", "BY", "SAVED", "AT"]
    pca = lines[pred + 2].split()
    assert pca[0] == "irispca" and pca[1] != pca[2] and pca[3] == "train_pca"  # serves the old PCA, a newer one is saved
    stale = lines[pred + 4]
    assert stale.startswith("  stale 'irispca' -> 'irisrf': 'irispca' was retrained by pipeline 'train_pca' at ")
    assert stale.endswith("(MAJOR) since 'irisrf' was trained on it; run and save pipeline 'train_iris'")


def test_status_as_json_for_named_pipelines_answers_from_the_store_alone(project):
    stale_project(project)
    (project / "iris_project.py").write_text("raise RuntimeError('the project must not be imported')\n")
    status = json.loads(run(project, "status", "pred_iris", "never_saved", "--json").stdout)
    pred, never = status["pipelines"]
    assert (pred["name"], pred["saved"], pred["loaded"]) == ("pred_iris", True, True)
    [edge] = pred["stale"]
    assert (edge["upstream"], edge["downstream"], edge["fix"]) == ("irispca", "irisrf", "train_iris")
    assert edge["change"]["retrained_by"] == "train_pca"
    assert never == {"name": "never_saved", "saved": False, "loaded": False, "ops": [], "stale": []}
    assert status["jobs"] == []


def test_status_names_the_field_a_code_change_changed(project):
    stale_project(project)
    (project / "iris_project.py").write_text(PROJECT.format(n=3), encoding="utf-8")
    run(project, "call", "train_pca", "--quiet")
    run(project, "save", "train_pca")
    out = run(project, "status", "pred_iris").stdout
    assert ("stale 'irispca' -> 'irisrf': irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3 "
            "since 'irisrf' was trained on it; run and save pipeline 'train_iris'") in out  # fmt: skip
    refused = run(project, "load", "pred_iris", code=1).stderr
    assert "irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3 since 'irisrf' was trained on it" in refused


def test_status_lists_jobs_and_checks_its_limit(project):
    config = project / "chariots.toml"
    config.write_text(config.read_text() + '\n[workers]\npool = "inprocess"\n')
    run(project, "call", "train_iris", "--use-worker", "--quiet")
    out = run(project, "status", "train_iris", "--limit", "1").stdout
    assert out.splitlines()[-2].split()[:2] == ["JOB", "PIPELINE"]
    assert out.splitlines()[-1].split()[1:3] == ["train_iris", "done"]
    assert "--limit must be a number >= 0" in run(project, "status", "--limit", "-1", code=1).stderr


def test_dag_draws_a_pipeline_in_every_format(project):
    svg = run(project, "dag", "train_iris").stdout
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and "irispca" in "".join(root.itertext())
    assert run(project, "dag", "pred_iris", "--format", "dot").stdout.startswith('digraph "pred_iris" {')
    assert run(project, "dag", "pred_iris", "--format", "mermaid").stdout.startswith('---\ntitle: "pred_iris"')
    html = run(project, "dag", "pred_iris", "--format", "html").stdout
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    wrote = run(project, "dag", "pred_iris", "--output", "pred.svg").stdout
    assert wrote.strip() == "wrote the svg of pred_iris to pred.svg"
    assert ET.fromstring((project / "pred.svg").read_text()).tag.endswith("svg")
    both = run(project, "dag", "train_iris", "pred_iris", "--format", "dot").stdout
    assert both.startswith('digraph "train_iris, pred_iris" {') and both.count("subgraph") == 2  # a frame each


def test_dag_lineage_draws_saved_versions_and_the_stale_link_from_the_store(project):
    stale_project(project)
    (project / "iris_project.py").write_text("raise RuntimeError('the project must not be imported')\n")
    dot = run(project, "dag", "pred_iris", "--lineage", "--format", "dot").stdout
    assert dot.startswith('digraph "lineage of pred_iris" {')
    assert dot.count("serving pred_iris") == 2  # the held PCA and forest
    stale = [line for line in dot.splitlines() if "color=red3" in line]
    assert len(stale) == 1 and "was retrained by pipeline 'train_pca'" in stale[0]
    assert "data" not in dot  # plain ops have no saved versions to draw


def test_dag_errors_say_what_to_do(project):
    assert "the project has no pipeline 'nope'; its pipelines: 'train_iris', 'train_pca', 'pred_iris'" in run(
        project, "dag", "train_iris", "nope", code=1).stderr  # fmt: skip
    never = run(project, "dag", "pred_iris", "--lineage", code=1).stderr
    assert "pipeline 'pred_iris' was never saved nor held" in never and "chariots save pred_iris" in never
    assert "cannot write --output" in run(project, "dag", "pred_iris", "--output", str(project / "no" / "x.svg"), code=1).stderr
    assert "invalid choice: 'png'" in run(project, "dag", "pred_iris", "--format", "png", code=2).stderr


def test_the_readmes_picture_is_what_the_command_draws(tmp_path):
    """docs/iris_pipelines.svg is drawn by the command the README gives; redraw it when this fails."""
    pytest.importorskip("sklearn")
    run(tmp_path, "new", "iris", "--directory", str(tmp_path / "iris"))
    drawn = run(tmp_path, "dag", "train_iris", "pred_iris", "--config", str(tmp_path / "iris" / "chariots.toml")).stdout
    picture = Path(__file__).resolve().parents[3] / "docs" / "iris_pipelines.svg"
    assert drawn == picture.read_text(encoding="utf-8"), (
        "redraw it: chariots new iris --directory /tmp/iris && chariots dag train_iris pred_iris "
        "--config /tmp/iris/chariots.toml --output docs/iris_pipelines.svg"
    )
