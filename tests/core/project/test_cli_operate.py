"""``chariots history``, ``rollback``, ``split`` and ``predictions``, each command a process of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[2] / "support"
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def project(tmp_path):
    """A project serving the remember pipelines (a copy of chariots_test_deploy), ``pred`` logged."""
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    shutil.copy(SUPPORT / "chariots_test_deploy.py", tmp_path / "deploy_mini.py")
    (tmp_path / "chariots.toml").write_text(
        '[op_store]\npath = "data"\n\n[pipelines]\nimport_path = "deploy_mini:remember_pipelines"\n'
        'log_predictions = ["pred"]\n',
        encoding="utf-8",
    )
    return tmp_path


def run(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "chariots_core.project.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def deploy(project: Path, value: str, *url: str) -> None:
    run(project, "call", "train", "--input", json.dumps(value), "--quiet", *url)
    run(project, "save", "train", *url)
    run(project, "load", "pred", *url)


def table(result: subprocess.CompletedProcess, skip: int = 0) -> list[list[str]]:
    """The rows of the table printed (after ``skip`` lines), cut at the columns of its header."""
    header, *lines = result.stdout.splitlines()[skip:]
    starts = [index for index, char in enumerate(header) if char != " " and (index == 0 or header[index - 1] == " ")]
    starts = [start for start in starts if start == 0 or header[start - 2 : start] == "  "]  # "LATEST SAVED"
    bounds = list(zip(starts, [*starts[1:], None]))
    return [[line[start:end].strip() for start, end in bounds] for line in lines]


def test_history_and_rollback_across_processes(project):
    deploy(project, "one")
    deploy(project, "two")
    first, second = table(run(project, "history", "pred"))[::-1]
    assert [row[2:4] for row in (first, second)] == [["load", "deployed"]] * 2
    assert second[-1] == "latest" and second[-2].startswith(f"{os.uname().nodename}/")
    assert second[4].startswith("remember ") and second[4] != first[4]

    rolled = run(project, "rollback", "pred")
    assert rolled.stdout.startswith(f"rolled pipeline 'pred' back to deployment {first[0]} (now deployment ")
    assert json.loads(run(project, "call", "pred", "--input", "0", "--quiet").stdout) == "one"  # held for it
    newest = table(run(project, "history", "pred", "--limit", "1"))
    assert len(newest) == 1 and newest[0][2:4] == ["rollback", "deployed"]
    assert newest[0][-1] == f"restores {first[0]}" and newest[0][4] == first[4]

    run(project, "rollback", "pred", "--to", second[0])
    assert json.loads(run(project, "call", "pred", "--input", "0", "--quiet").stdout) == "two"
    unknown = run(project, "rollback", "pred", "--to", "cafe", code=1)
    assert "chariots: NotSavedError: pipeline 'pred' has no deployment 'cafe'" in unknown.stderr


def test_status_lists_the_newest_deployments(project):
    deploy(project, "one")
    run(project, "rollback", "pred", code=1)  # nothing to go back to: not a deployment
    deploy(project, "two")
    (newest,) = json.loads(run(project, "status", "--json", "--limit", "1").stdout)["deployments"]
    latest = table(run(project, "history", "pred", "--limit", "1"))[0]
    assert (newest["deployment_id"], newest["pipeline"], newest["kind"], newest["note"]) == (
        latest[0],
        "pred",
        "load",
        "latest",
    )
    text = run(project, "status").stdout
    assert "deployments, newest first:" in text and latest[0] in text


def test_a_refused_load_shows_in_the_history_with_its_reason(project):
    refused = run(project, "load", "pred", code=1)
    assert "NotSavedError" in refused.stderr
    (row,) = table(run(project, "history", "pred"))
    assert row[2:5] == ["load", "refused", "-"] and row[-1].startswith("NotSavedError: pipeline 'pred' cannot")


def test_history_of_a_pipeline_never_deployed_says_what_to_do(project):
    assert run(project, "history", "pred").stdout.strip() == (
        "pipeline 'pred' has no deployments yet: chariots load pred makes the first"
    )


STORE_ONLY = """
import json, sys
from chariots_core.project.cli import main
code = main(sys.argv[1:])
heavy = sorted(name for name in ("deploy_mini", "chariots_fsspec", "fsspec", "chariots_waitress") if name in sys.modules)
print(json.dumps({"code": code, "imported": heavy}))
"""


def test_history_and_predictions_answer_from_the_store_without_importing_the_project(project):
    deploy(project, "one")
    run(project, "call", "pred", "--input", "1", "--quiet")
    (project / "deploy_mini.py").write_text("raise RuntimeError('the project must not be imported')\n")
    for command in (["history", "pred"], ["predictions", "pred"]):
        result = subprocess.run([sys.executable, "-c", STORE_ONLY, *command], cwd=project, capture_output=True,
                                text=True, timeout=60, env=ENV)  # fmt: skip
        *printed, last = result.stdout.splitlines()
        assert json.loads(last) == {"code": 0, "imported": []}, result.stderr
        assert len(printed) == 2  # a header and one row


def test_predictions_lists_the_logged_calls(project):
    deploy(project, "model")
    for number in range(3):
        run(project, "call", "pred", "--input", json.dumps({"n": number}), "--quiet")
    rows = table(run(project, "predictions", "pred", "--limit", "2"))
    assert len(rows) == 2 and rows[0][-1] == '"model"' and rows[0][-2] == '{"n": 2}'
    records = [json.loads(line) for line in run(project, "predictions", "pred", "--json").stdout.splitlines()]
    assert [record["input"] for record in records] == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert run(project, "predictions", "pred", "--since", "0.000001").stdout.strip() == (
        "no calls of pipeline 'pred' logged in that time"
    )


def test_split_needs_a_server(project):
    result = run(project, "split", "pred", "--variant", "a=serving", "--variant", "b=latest", code=1)
    assert "chariots: ConfigError: a split lives in the process that serves it" in result.stderr


@pytest.mark.slow
def test_operating_a_running_server(project, server):
    url = ("--url", server)
    deploy(project, "one", *url)
    deploy(project, "two", *url)
    history = table(run(project, "history", "pred", *url))
    assert [row[2] for row in history] == ["load", "load"]
    run(project, "rollback", "pred", *url)
    assert json.loads(run(project, "call", "pred", "--input", "0", *url).stdout) == "one"

    split = run(project, "split", "pred", "--variant", "old=serving", "--variant", f"new={history[0][0]}",
                "--weight", "old=1", "--weight", "new=3", *url)  # fmt: skip
    assert split.stdout.splitlines()[0].startswith("split pipeline 'pred' (deployment ")
    assert [row[:2] for row in table(split, skip=1)] == [["old", "25.0%"], ["new", "75.0%"]]
    answers = {json.loads(run(project, "call", "pred", "--input", "0", *url).stdout) for _ in range(12)}
    assert answers <= {"one", "two"}
    logged = [json.loads(line) for line in run(project, "predictions", "pred", "--json", *url).stdout.splitlines()]
    assert {record["variant"] for record in logged[:12]} <= {"old", "new"} and logged[-1]["variant"] is None
    bad = run(project, "split", "pred", "--variant", "old", *url, code=1)
    assert "--variant takes NAME=VALUE" in bad.stderr
