"""The response of a pipeline call and the job states, as they travel on the wire."""

from __future__ import annotations

import json

from chariots_core import BaseOp, JobStatus, PipelineResponse, VersionedField, VersionType


class AddOp(BaseOp):
    number = VersionedField(3, VersionType.MAJOR)

    def execute(self, x):
        return x + self.number


def test_pipeline_response_json_round_trip():
    version = AddOp().op_version
    response = PipelineResponse(
        value=[1, 2],
        versions={"addop": version},
        job_id="abc",
        job_status=JobStatus.failed,
        error={"type": "ValueError", "message": "bad", "node": "addop"},
        variant="candidate",
    )
    wire = json.loads(json.dumps(response.to_json()))
    assert wire["job_status"] == "failed" and wire["versions"] == {"addop": str(version)}
    assert wire["variant"] == "candidate"
    assert PipelineResponse.from_json(wire) == response


def test_a_synchronous_response_has_no_job_fields_on_the_wire():
    wire = PipelineResponse(value={"a": 1}).to_json()
    assert wire == {
        "value": {"a": 1}, "versions": {}, "job_id": None, "job_status": None, "error": None, "variant": None
    }  # fmt: skip
    assert PipelineResponse.from_json(wire) == PipelineResponse(value={"a": 1})
    # A response from a server that predates variants reads back as not split.
    del wire["variant"]
    assert PipelineResponse.from_json(wire).variant is None


def test_job_status_values_match_chariots_0_2():
    assert [status.value for status in JobStatus] == ["deferred", "queued", "running", "done", "failed"]
