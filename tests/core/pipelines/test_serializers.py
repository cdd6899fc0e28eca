"""Serializers: round trips, garbage refused with SerializationError, wrong types, lazy pandas."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest

from chariots_core.errors import SerializationError
from chariots_core.ml import BaseSerializer, CSVSerializer, DillSerializer, JSONSerializer, WrongTypeError


def test_dill_round_trips_closures_and_lambdas():
    offset = 5
    restored = DillSerializer().deserialize_object(DillSerializer().serialize_object(lambda x: x + offset))
    assert restored(1) == 6


def test_json_round_trips_json_values():
    value = {"a": [1, 2.5, None, True], "b": {"c": "é"}}
    data = JSONSerializer().serialize_object(value)
    assert isinstance(data, bytes)
    assert JSONSerializer().deserialize_object(data) == value


def test_csv_round_trips_a_data_frame():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 1.5, -2.0], "name": ["a", "b", "c"]})
    data = CSVSerializer().serialize_object(frame)
    pd.testing.assert_frame_equal(CSVSerializer().deserialize_object(data), frame)


GARBAGE = [b"", b"\x00\x01\x02\xff\xfe garbage", b"\x80\x04\x95 truncated pickle"]


@pytest.mark.parametrize("serializer", [DillSerializer(), JSONSerializer(), CSVSerializer()], ids=type)
@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_refused_with_a_serialization_error_naming_the_serializer(serializer, data):
    if isinstance(serializer, CSVSerializer):
        pytest.importorskip("pandas")
    with pytest.raises(SerializationError, match=f"{type(serializer).__name__} cannot read these bytes"):
        serializer.deserialize_object(data)


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan")], ids=repr)
def test_json_refuses_what_json_cannot_hold(value):
    with pytest.raises(WrongTypeError, match="JSONSerializer cannot serialize") as caught:
        JSONSerializer().serialize_object(value)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, SerializationError)


def test_csv_refuses_anything_but_a_data_frame():
    pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="only serializes pandas DataFrames \\(got a list\\)"):
        CSVSerializer().serialize_object([[1, 2]])


def test_dill_refuses_what_cannot_be_pickled():
    generator = (x for x in range(3))
    with pytest.raises(WrongTypeError, match="DillSerializer cannot serialize a generator"):
        DillSerializer().serialize_object(generator)


def test_a_serializer_must_implement_both_methods():
    class Half(BaseSerializer):
        def serialize_object(self, target):
            return b""

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_csv_without_pandas_is_a_backend_error_naming_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pandas"] = None  # what an environment without pandas looks like
        from chariots_core.errors import BackendError
        from chariots_core.ml import CSVSerializer
        try:
            CSVSerializer().deserialize_object(b"x\\n1\\n")
        except BackendError as exc:
            print("BackendError:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "BackendError: CSVSerializer needs pandas" in result.stdout
    assert "pip install 'chariots[sklearn]'" in result.stdout


def test_importing_the_ml_package_imports_no_framework():
    script = (
        "import sys, chariots_core.ml\n"
        "print(sorted(m for m in ('pandas', 'sklearn', 'keras', 'jax') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- DillSerializer's buffers out of band -----------------------------------------------------------
def test_dill_streams_arrays_out_of_band_and_reads_them_back_in_place():
    numpy = pytest.importorskip("numpy")
    from chariots_core.verified import BufferFile

    matrix = numpy.arange(12.0).reshape(3, 4)
    value = {"c": matrix, "f": matrix.T, "strided": matrix[:, ::2], "same": matrix, "frozen": numpy.frombuffer(b"abcd", "u1")}
    buffer = io.BytesIO()
    buffer.write(b"a header line\n")  # the stream need not start at the file's start
    DillSerializer().serialize_to(value, buffer)
    blob = bytearray(buffer.getvalue())

    file = BufferFile(blob)
    assert file.readline() == b"a header line\n"
    restored = DillSerializer().deserialize_from(file)

    for name in ("c", "f", "strided"):
        numpy.testing.assert_array_equal(restored[name], value[name])
    assert restored["same"] is restored["c"]
    assert numpy.shares_memory(restored["c"], numpy.frombuffer(blob, "u1"))  # a view of the blob: no copy
    assert restored["c"].flags.writeable and restored["c"].ctypes.data % 8 == 0
    assert not restored["frozen"].flags.writeable  # read-only stays read-only
    from_bytes = DillSerializer().deserialize_object(bytes(blob[len(b"a header line\n") :]))
    assert from_bytes["c"].flags.writeable  # bytes are immutable: the arrays get memory of their own


def test_dill_still_reads_plain_pickles():
    import dill

    assert DillSerializer().deserialize_object(dill.dumps({"written": "before"})) == {"written": "before"}


@pytest.mark.parametrize("cut", [1, 9, 17, 40])
def test_a_truncated_dill_stream_is_a_serialization_error(cut):
    numpy = pytest.importorskip("numpy")
    data = DillSerializer().serialize_object(numpy.arange(1000.0))

    with pytest.raises(SerializationError, match="DillSerializer cannot read these bytes"):
        DillSerializer().deserialize_object(data[:-cut])


def test_a_buffer_file_reads_like_a_file():
    from chariots_core.verified import BufferFile

    file = BufferFile(bytearray(b"one\ntwo\nthree"))
    assert (file.readline(), file.readline(2), file.tell()) == (b"one\n", b"tw", 6)
    target = bytearray(3)
    assert file.readinto(target) == 3 and target == b"o\nt"
    assert file.read() == b"hree" and file.read() == b"" and file.readline() == b""
    file.seek(-5, io.SEEK_END)
    assert file.read(100) == b"three" and file.seekable() and file.readable()
