"""Op store records: JSON (never pickles), the keys that organise a store, journal kinds."""

from __future__ import annotations

import json
from typing import ClassVar

import attrs
import pytest

from chariots_core.errors import ConfigError, StoreError
from chariots_core.op_store.records import (
    Commit,
    JobRecord,
    JournalAppend,
    LinkRecord,
    OpVersionRecord,
    SnapshotRecord,
    code_key,
    from_json,
    from_plain,
    to_json,
    to_plain,
    version_key,
)

V1 = "a" * 40 + "_" + "b" * 40 + "_" + "c" * 40 + "_1.0"
V2 = "d" * 40 + "_" + "b" * 40 + "_" + "c" * 40 + "_2.0"


def version_record(op_name: str = "model", version: str = V1) -> OpVersionRecord:
    return OpVersionRecord(op_name, version, V1, "train", 1.0, f"ops/{op_name}/x", "0" * 64, 3)


def test_records_round_trip_through_json_not_pickle():
    records = [
        version_record(),
        LinkRecord("data", V1, "model", V2),
        SnapshotRecord("train", 1.5, {"model": V1}),
        Commit([version_record()], [LinkRecord("data", V1, "model", V1)], [JournalAppend("t", SnapshotRecord("t", 1.0, {}))]),
        JobRecord("j", "p", "failed", 1.0, 2.0, error={"type": "ValueError", "message": "no", "node": "op"}),
    ]
    for record in records:
        encoded = to_json(record)
        assert isinstance(json.loads(encoded), dict)
        assert b" " not in encoded.replace(b"ValueError", b"")  # compact
        if not isinstance(record, Commit):  # a commit is written, never read back whole
            assert from_json(encoded, type(record)) == record
            assert from_json(encoded.decode(), type(record)) == record
    assert to_json(LinkRecord("b", "1", "a", "2")).startswith(b'{"downstream_op":"a"')  # sorted keys


def test_a_record_written_by_newer_code_reads_back_without_its_new_attributes():
    plain = {**to_plain(version_record()), "fields": {"n_components": {"type": "MAJOR"}}}

    assert from_plain(plain, OpVersionRecord) == version_record()


def test_a_record_written_before_an_optional_attribute_existed_reads_back_with_its_default():
    plain = to_plain(JobRecord("j", "p", "queued", 1.0, 1.0))
    del plain["owner"], plain["versions"]

    assert from_plain(plain, JobRecord) == JobRecord("j", "p", "queued", 1.0, 1.0)


@attrs.frozen
class Field:
    kind: str
    text: str


@attrs.frozen
class WithFields:
    """A record with a nested attrs attribute, as issue 16's OpVersionRecord.fields will be."""

    name: str
    fields: dict[str, Field] = attrs.field(factory=dict)
    order: tuple[str, ...] = ()


def test_a_record_of_nested_values_round_trips_through_cattrs():
    record = WithFields("pca", {"n": Field("MAJOR", "3")}, ("n",))

    assert from_json(to_json(record), WithFields) == record
    assert from_plain(json.loads(json.dumps(to_plain(record))), WithFields) == record


def test_version_and_code_keys_drop_the_creation_time():
    assert version_key(V1) == V1.rsplit("_", 1)[0]
    assert version_key(V1) == version_key(V1.replace("_1.0", "_7.5"))
    assert code_key(V2, "major") == "d" * 40
    assert code_key(V2, "minor") == "d" * 40 + "_" + "b" * 40
    assert code_key(V2, "exact") == version_key(V2)
    with pytest.raises(ConfigError, match="'policy' must be one of 'major', 'minor', 'exact'"):
        code_key(V1, "patch")


def test_only_a_version_other_than_its_code_holds_trained_state():
    assert not version_record(version=V1.replace("_1.0", "_9.0")).holds_trained_state
    assert version_record(version=V2).holds_trained_state


@attrs.frozen
class Audit:
    JOURNAL: ClassVar[str] = "audit"

    what: str


def test_journal_appends_take_their_kind_from_the_record_class():
    assert JournalAppend("pred", Audit("loaded")).kind == "audit"
    assert JournalAppend("pred", SnapshotRecord("pred", 1.0, {})).kind == "snapshots"
    with pytest.raises(StoreError, match="JOURNAL = '<name>'"):
        JournalAppend("pred", LinkRecord("a", "1", "b", "2"))
