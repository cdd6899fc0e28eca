"""The prediction log through the app's public API, on the memory sink (LMDB: tests/backends/lmdb)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time

import pytest
from chariots_test_deploy import IN, OUT, remember_pipelines, train_and_save
from chariots_test_processes import wait_until

from chariots_core import BaseOp, Chariots, Node, Pipeline
from chariots_core.errors import ConfigError
from chariots_core.serving.prediction_log import (
    MemoryPredictionSink,
    PredictionLog,
    PredictionRecord,
    PredictionSink,
    snapshot,
)


def logged_app(mode="full", sink="memory", **log_options):
    log = PredictionLog(sink, **log_options)
    app = Chariots(remember_pipelines(), op_store="memory", saver="memory", log_predictions={"pred": mode},
                   prediction_log=log)  # fmt: skip
    train_and_save(app, {"trained": True})
    app.load_pipeline("pred")
    return app, log


def test_each_call_records_time_versions_latency_input_and_output():
    app, log = logged_app()
    started = time.time()
    response = app.call_pipeline("pred", {"pause": 0.05, "rows": [1, 2]})
    app.call_pipeline("train", 3)  # not logged
    (record,) = app.predictions("pred")
    assert record.pipeline == "pred" and record.variant is None and not record.shadow
    assert started <= record.at <= time.time() and 0.05 <= record.latency < 5
    assert record.versions == {name: str(version) for name, version in response.versions.items()}
    assert record.input == {"pause": 0.05, "rows": [1, 2]} and record.output == {"trained": True}
    assert record.input_sha256 is None and record.error is None
    with pytest.raises(ConfigError, match="does not log the calls of .pred."):
        Chariots(remember_pipelines(), op_store="memory", saver="memory").predictions("pred")
    log.close()


def test_hashes_only_keeps_the_sha256_of_the_canonical_json():
    app, log = logged_app("sha256")
    app.call_pipeline("pred", {"b": 1, "a": [1.5, None]})
    (record,) = app.predictions("pred")
    canonical = json.dumps({"a": [1.5, None], "b": 1}, sort_keys=True, separators=(",", ":")).encode()
    assert record.input_sha256 == hashlib.sha256(canonical).hexdigest()
    assert record.output_sha256 == hashlib.sha256(b'{"trained":true}').hexdigest()
    assert record.input is None and record.output is None
    log.close()


class Doubler(BaseOp):
    """Doubles each item of its input list in place (ops may change what they are given)."""

    def execute(self, rows):
        rows[:] = [row * 2 for row in rows]
        return rows


def test_the_input_is_logged_as_given_even_if_an_op_changes_it_and_later_changes_do_not_reach_the_log():
    pipeline = Pipeline([Node(Doubler(), input_nodes=[IN], output_nodes=OUT)], "double")
    log = PredictionLog("memory")
    with Chariots([pipeline], op_store="memory", saver="memory", log_predictions=["double"], prediction_log=log) as app:
        rows = [1, 2]
        output = app.call_pipeline("double", rows).value
        output.append("changed later")
        (record,) = app.predictions("double")
        assert record.input == [1, 2] and record.output == [2, 4]
    log.close()


def test_a_failed_call_is_logged_with_its_error_and_still_raises():
    app, log = logged_app()
    with pytest.raises(ValueError):
        app.call_pipeline("pred", "fail")
    (record,) = app.predictions("pred")
    assert record.error.startswith("ValueError: asked to fail") and record.output is None and record.input == "fail"
    log.close()


def test_values_that_are_not_json_are_logged_as_null():
    app, log = logged_app()
    app.call_pipeline("pred", b"raw bytes")
    (record,) = app.predictions("pred")
    assert record.input is None and record.output == {"trained": True}
    log.close()


def test_since_limit_and_newest_first():
    app, log = logged_app()
    for number in range(5):
        app.call_pipeline("pred", number)
    middle = app.predictions("pred", limit=None)[2].at
    assert [r.input for r in app.predictions("pred", limit=None)] == [4, 3, 2, 1, 0]
    assert [r.input for r in app.predictions("pred", limit=2)] == [4, 3]
    assert [r.input for r in app.predictions("pred", since=middle)] == [4, 3, 2]
    assert app.predictions("pred", since=time.time() + 60) == []
    with pytest.raises(ConfigError, match="'since' must be None or a time"):
        app.predictions("pred", since="yesterday")
    with pytest.raises(ConfigError, match="'limit' must be None or a number"):
        app.predictions("pred", limit=-2)
    log.close()


def test_predictions_as_a_dataframe():
    pandas = pytest.importorskip("pandas")
    app, log = logged_app()
    app.call_pipeline("pred", [1])
    app.call_pipeline("pred", [2])
    frame = app.predictions("pred", as_frame=True)
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 2
    assert list(frame["input"]) == [[2], [1]] and set(frame.columns) >= {"at", "latency", "versions", "variant"}
    log.close()


@pytest.mark.parametrize("keep, max_age, expected", [(3, None, [9, 8, 7]), (None, 0.5, [9, 8, 7, 6, 5])])
def test_retention_by_count_and_by_age(keep, max_age, expected):
    sink = MemoryPredictionSink()
    log = PredictionLog(sink, keep=keep, max_age=max_age)
    now = time.time_ns()
    for number in range(10):  # started 0.9, 0.8 ... 0 s ago
        log.add("p", now - 900_000_000 + number * 100_000_000, 0, None, {}, snapshot(number), snapshot(number))
    log.flush()
    assert [record.input for record in log.read("p", limit=None)] == expected
    log.close()


class FailingSink(PredictionSink):
    """A sink whose disk is full until ``fail`` is set to False."""

    def __init__(self):
        self.inner = MemoryPredictionSink()
        self.fail = True

    def write(self, entries, keep, oldest):
        if self.fail:
            raise OSError(28, "No space left on device")
        self.inner.write(entries, keep, oldest)

    def read(self, pipeline, since, limit):
        return self.inner.read(pipeline, since, limit)


def test_a_sink_that_cannot_write_drops_records_with_one_warning_and_never_fails_a_call(caplog):
    sink = FailingSink()
    sink.fail = False  # while the app trains and loads
    app, log = logged_app(sink=sink, flush_interval=0.01)
    sink.fail = True
    with caplog.at_level(logging.WARNING, logger="chariots.predictions"):
        for number in range(30):
            assert app.call_pipeline("pred", number).value == {"trained": True}
            if number % 10 == 0:
                log.flush()
        log.flush()
        assert log.stats() == {"written": 0, "dropped": 30, "pending": 0}
        warnings = [r for r in caplog.records if r.name == "chariots.predictions"]
        assert len(warnings) == 1 and "No space left on device" in warnings[0].getMessage()
        sink.fail = False  # space again: writes resume, and the next failure warns again
        app.call_pipeline("pred", "back")
        assert [r.input for r in app.predictions("pred")] == ["back"]
        sink.fail = True
        app.call_pipeline("pred", "again")
        log.flush()
        assert len([r for r in caplog.records if r.name == "chariots.predictions"]) == 2
    assert app.health_check()["predictions"] == {"written": 1, "dropped": 31, "pending": 0}
    log.close()


def test_records_beyond_max_pending_are_dropped_not_queued():
    log = PredictionLog(MemoryPredictionSink(), max_pending=5, flush_interval=60)
    for number in range(8):
        log.add("p", time.time_ns(), 0, None, {}, snapshot(number), snapshot(number))
    assert log.stats() == {"written": 0, "dropped": 3, "pending": 5}
    log.close()
    assert log.stats() == {"written": 5, "dropped": 3, "pending": 0}
    log.add("p", time.time_ns(), 0, None, {}, snapshot("after close"), None)  # ignored
    assert [r.input for r in log.read("p")] == [4, 3, 2, 1, 0]


def writer_threads():
    return [thread for thread in threading.enumerate() if thread.name == "chariots-prediction-log"]


def test_the_writer_thread_writes_in_the_background_and_close_stops_it():
    before = len(writer_threads())
    log = PredictionLog(MemoryPredictionSink(), flush_interval=0.01)
    assert len(writer_threads()) == before + 1 and all(thread.daemon for thread in writer_threads())
    log.add("p", time.time_ns(), 0, None, {}, snapshot(1), snapshot(2))
    wait_until(lambda: log.stats()["written"] == 1)
    log.close()
    assert len(writer_threads()) == before


def test_prediction_log_settings_are_checked():
    pipelines = remember_pipelines()
    with pytest.raises(ConfigError, match="'log_predictions' names 'nope'"):
        Chariots(pipelines, op_store="memory", saver="memory", log_predictions=["nope"])
    with pytest.raises(ConfigError, match="must be one of"):
        Chariots(pipelines, op_store="memory", saver="memory", log_predictions={"pred": "md5"})
    with pytest.raises(ConfigError, match="'log_predictions' must be pipeline names"):
        Chariots(pipelines, op_store="memory", saver="memory", log_predictions=3)
    with pytest.raises(ConfigError, match="needs a local directory or memory"):
        Chariots(pipelines, path="s3://bucket/x", op_store="memory", saver="memory", log_predictions=["pred"])
    for name, value in [("keep", 0), ("max_age", -1), ("flush_interval", "1"), ("max_pending", 1.5)]:
        with pytest.raises(ConfigError, match=f"'{name}' must be"):
            PredictionLog("memory", **{name: value})
    with pytest.raises(ConfigError, match="'sink' must be a PredictionSink"):
        PredictionLog(3)


def test_a_record_survives_json():
    record = PredictionRecord("p", 1.5, 0.25, "a", {"op": "v"}, [1], {"x": 2}, error=None, shadow=True)
    assert PredictionRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
