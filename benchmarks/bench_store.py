"""Cost of the op store: model round trip against a floor and MLflow, cost against history, record reads, big models.

1. **Model round trip** (``--only roundtrip``): a fitted 10-tree ``RandomForestClassifier`` is
   saved and loaded back (medians over several repeats, each in a fresh directory):

   - ``floor``: what any save that survives power loss must do, and the load: ``dill.dumps``,
     write to a temporary file + fsync, rename into a new directory + fsync of that directory
     and of the two it was made in (each repeat starts from an empty directory, as a first save
     does), one durable LMDB commit of a small record (``sync`` + ``metasync``: its pages, then
     its meta page), then read + ``dill.loads``;
   - ``chariots``: ``Chariots(path=...)`` (LMDB metadata + file blobs, durable by default)
     ``save_pipeline`` of the training pipeline then ``load_pipeline`` of the prediction
     pipeline: the same syncs, sha256 computed while streaming and checked before loading,
     every edge checked;
   - ``mlflow``: ``mlflow.sklearn.log_model`` in a run then ``mlflow.sklearn.load_model``, with a
     local file tracking store and cloudpickle; once as used by default (MLflow infers the pip
     requirements) and once with the requirements given (only when MLflow is installed:
     ``pip install 'chariots[bench]'``).

   Targets: Chariots at most 1.5x the floor, and at least 10x faster than MLflow as used by
   default (the ratio with the requirements given is printed too).

2. **History** (``--only history``): one model op ("head", downstream of "weights") with 10,
   1,000, 10,000 and 100,000 saved versions, each in its own store, timed in turns:
   ``save_pipeline`` of a newly trained head, ``load_pipeline`` of the prediction pipeline
   (strategy "latest": it loads the new head), ``latest_compatible`` where the newest weights
   were never trained on (it must step back one weights version: the usual case), and
   ``latest_compatible`` that finds no compatible set (every head was built on weights made by
   other code, so it reads up to its bound of candidates and gives up). Printed as ratios to
   the 10-version cost of the same column. Target: save and load at 10,000 versions at most
   1.5x their cost at 10. The histories are written straight through the store
   (``OpStore.commit`` of 1,000 records at a time: saving 100,000 times through the app would
   take an hour of fsyncs); two real saves through the app frame them, so that what loads
   has real bytes. The same table for the object store on S3 (``objects``: a local moto
   server); ``--history-on lmdb`` or ``objects`` picks one, ``BENCH_HISTORIES=10,1000,10000``
   limits the sizes.

3. **Record reads** (``--only records``): 10,000 version records (100 ops x 100 versions,
   committed 100 records per transaction) written and read back through ``LMDBOpStore``,
   against raw LMDB puts and range reads of the same JSON bytes (and raw reads plus
   ``json.loads``, as the store decodes too); stores are opened before the clock starts.
   Target: reading through the store at most 2x raw reads plus ``json.loads``.

4. **Big models** (``--only big``): an ML op holding a 40 MB and a 400 MB array, saved and
   loaded in child processes against ``pickle.dump`` + fsync / ``pickle.load``: peak RSS and
   time, as ratios (see ``big_models.py``). Targets: peak RSS at most 1.2x, time at most 1.3x.

Run: ``python benchmarks/bench_store.py [--repeats 9] [--only history,records,big] [--history-on objects]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import dill
import lmdb
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from chariots_core import (
    BaseOp,
    Chariots,
    LoadableOp,
    Node,
    OpStore,
    Pipeline,
    Version,
    VersionedField,
    VersionedFieldDict,
    VersionError,
    VersionType,
)
from chariots_core.ml import MLMode
from chariots_core.op_store.lineage import LATEST_COMPATIBLE_BOUND
from chariots_core.op_store.records import Commit, LinkRecord, OpVersionRecord, to_json
from chariots_lmdb import LMDBOpStore
from chariots_sklearn import SKSupervisedOp

SECTIONS = ("roundtrip", "history", "records", "big")
TARGET_VS_FLOOR = 1.5
TARGET_HISTORY = 1.5  # save and load at 10,000 versions vs 10
TARGET_READS = 2.0  # reading records vs raw LMDB bytes + json.loads
HISTORIES = tuple(int(size) for size in os.environ.get("BENCH_HISTORIES", "10,1000,10000,100000").split(","))
BULK = 1_000  # records per commit when writing a history
TARGET_VS_MLFLOW = 10.0
OPS, VERSIONS = 100, 100


class SplitXY(BaseOp):
    """Passes the ``(X, y)`` pipeline input on as two values."""

    def execute(self, data: tuple[Any, Any]) -> tuple[Any, Any]:
        return data[0], data[1]


class Forest(SKSupervisedOp):
    """The model every contender saves and loads."""

    model_class = RandomForestClassifier
    model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_estimators": 10, "random_state": 0})


def pipelines() -> list[Pipeline]:
    train = Pipeline(
        [
            Node(SplitXY(), input_nodes=["__pipeline_input__"], output_nodes=["x", "y"]),
            Node(Forest(MLMode.FIT), input_nodes=["x", "y"]),
        ],
        "train",
    )
    pred = Pipeline(
        [Node(Forest(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
        "pred",
    )
    return [train, pred]


Contender = tuple[Callable[[str], Any], Callable[[Any], Any]]  # (prepare(directory), run(prepared))


def interleaved_ms(contenders: dict[str, Contender], repeats: int) -> dict[str, float]:
    """Median wall time (ms) of each contender's ``run``, every repeat in a fresh directory.

    Contenders take turns within each repeat, so a slow spell of the shared disk or CPU hits
    all of them rather than skewing one ratio.
    """
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (prepare, run) in contenders.items():
            with tempfile.TemporaryDirectory(prefix="bench_store_") as directory:
                prepared = prepare(directory)
                start = time.perf_counter()
                run(prepared)
                timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000 for name, values in timings.items()}


# -- model round trip ----------------------------------------------------------------------------
def floor_prepare(directory: str) -> tuple[str, lmdb.Environment]:
    """The floor's metadata store, opened before the clock starts (as the app's is)."""
    return directory, lmdb.open(os.path.join(directory, "meta"), map_size=64 * 1024 * 1024, sync=True, metasync=True)


def floor_round_trip(model: Any) -> Callable[[tuple[str, lmdb.Environment]], Any]:
    def run(prepared: tuple[str, lmdb.Environment]) -> Any:
        directory, env = prepared
        # The blob's directory is new, as a first save's is: its entry in its parent is synced too.
        blobs = os.path.join(directory, "blobs")
        folder = os.path.join(blobs, "ops", "model")
        os.makedirs(folder)
        temporary, path = os.path.join(blobs, "model.tmp"), os.path.join(folder, "model.dill")
        with open(temporary, "wb") as file:
            file.write(dill.dumps(model))
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, path)
        for synced in (folder, blobs, os.path.dirname(folder)):
            descriptor = os.open(synced, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(descriptor)
            os.close(descriptor)
        with env.begin(write=True) as txn:
            txn.put(b"model", json.dumps({"path": path, "size": os.path.getsize(path)}).encode())
        with open(path, "rb") as file:
            loaded = dill.loads(file.read())
        env.close()
        return loaded

    return run


def chariots_prepare(data: tuple[Any, Any]) -> Callable[[str], Chariots]:
    train, pred = pipelines()
    Chariots([train, pred], op_store="memory", saver="memory").call_pipeline(train, data)
    fitted = train.node_for_name["forest"].op  # the op the training run fitted

    def prepare(directory: str) -> Chariots:
        app = Chariots(pipelines(), path=directory)
        app.install_ops("train", {"forest": fitted})
        return app

    return prepare


def chariots_round_trip(app: Chariots) -> None:
    app.save_pipeline("train")
    app.load_pipeline("pred")
    app.close()


def mlflow_round_trip(model: Any, infer_requirements: bool) -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """MLflow's save and load; by default it also infers the model's pip requirements."""
    import mlflow
    import mlflow.sklearn

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    # The file tracking store is MLflow's zero-server setup, like Chariots' own; recent MLflow
    # releases refuse it unless asked.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls in a benchmark

    def prepare(directory: str) -> str:
        mlflow.set_tracking_uri("file://" + os.path.join(directory, "mlruns"))
        mlflow.set_experiment("bench")  # created before the clock starts
        return directory

    options = {} if infer_requirements else {"pip_requirements": ["scikit-learn"]}

    def run(_: str) -> Any:
        with mlflow.start_run():
            # cloudpickle: the format closest to Chariots' dill blobs (skops is not installed).
            info = mlflow.sklearn.log_model(model, name="forest", serialization_format="cloudpickle", **options)
        return mlflow.sklearn.load_model(info.model_uri)

    return prepare, run


# -- history ------------------------------------------------------------------------------------
class Weights(LoadableOp):
    """A small 'model' whose version changes with its seed, as a retrain changes it.

    A retrain changes the patch subversion: under the "major" policy every weights version
    fits every head, under "exact" only the one a head was built on.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    @property
    def op_version(self) -> Version:
        return type(self).__version__ + Version().update_patch(str(self.seed).encode())

    def execute(self, value: int) -> int:
        return value + self.seed

    def serialize(self) -> bytes:
        return json.dumps({"seed": self.seed}).encode() + b" " * 1024

    def load(self, serialized_object: bytes) -> None:
        self.seed = json.loads(serialized_object)["seed"]


class Head(Weights):
    """The model whose history grows, downstream of :class:`Weights`."""


class OtherWeights(Weights):
    """``Weights`` after a change of its code: no head was built on what it makes."""

    note = VersionedField(2, VersionType.MAJOR)


def history_pipelines(weights: type[Weights] = Weights) -> dict[str, Pipeline]:
    def pipeline(name: str, *ops: Weights) -> Pipeline:
        nodes = [Node(op, input_nodes=["__pipeline_input__"], output_nodes="x", name="weights") for op in ops[:1]]
        nodes += [Node(op, input_nodes=["x"], output_nodes="__pipeline_output__", name="head") for op in ops[1:]]
        return Pipeline(nodes, name)

    return {
        "train": pipeline("train", weights(), Head()),
        "train_weights": pipeline("train_weights", weights()),
        "pred": pipeline("pred", weights(), Head()),
    }


class History:
    """A store whose "head" op has ``size`` saved versions, and the apps that time it.

    :param op_store: opens the op store of each app (``None``: the default for ``directory``).
    """

    def __init__(self, directory: str, size: int, op_store: Callable[[], OpStore | None] = lambda: None) -> None:
        self.size, self.seed = size, 0
        self.app = Chariots(history_pipelines().values(), path=directory, op_store=op_store())
        self.retrain(Weights(0))  # the weights every head is built on
        weights = self.app.op_store.op_versions("weights")[0].version
        code = str(Head.__version__)
        for start in range(0, size - 2, BULK):
            seeds = range(2 + start, min(2 + start + BULK, size))  # seed 1 is the first real head
            records = [
                OpVersionRecord(
                    "head", str(Head(seed).op_version), code, "train", time.time(), f"ops/head/{seed}", "0" * 64, 1
                )
                for seed in seeds
            ]
            links = [LinkRecord("weights", weights, "head", record.version) for record in records]
            self.app.op_store.commit(Commit(records, links))
        self.seed = size - 1
        self.retrain(Weights(0))  # the newest head is real, so the first load has bytes to read
        assert len(self.app.op_store.op_versions("head")) == size
        # For "latest_compatible": new weights no head was trained on, which only the "exact"
        # policy refuses (the main app's "major" loads them)...
        self.stepping = Chariots(
            history_pipelines().values(), path=directory, compatibility="exact", op_store=op_store()
        )
        self.stepping.install_ops("train_weights", {"weights": Weights(-1)})
        self.stepping.save_pipeline("train_weights")
        # ...and weights of changed code, which no head fits (saved last: the newest weights).
        self.hopeless = Chariots(history_pipelines(OtherWeights).values(), path=directory, op_store=op_store())
        self.hopeless.install_ops("train_weights", {"weights": OtherWeights(-2)})
        self.hopeless.save_pipeline("train_weights")

    def retrain(self, weights: Weights) -> None:
        self.seed += 1
        self.app.install_ops("train", {"weights": weights, "head": Head(self.seed)})
        self.app.save_pipeline("train")

    def timed(self) -> dict[str, float]:
        """One round of every measurement, in seconds."""
        times = {}
        start = time.perf_counter()
        self.retrain(self.app.serving_pipeline("train").node_for_name["weights"].op)
        times["save"] = time.perf_counter() - start
        start = time.perf_counter()
        self.app.load_pipeline("pred")
        times["load"] = time.perf_counter() - start
        # Weights -1, the newest of the heads' code, were never built behind: it steps back to weights 0.
        start = time.perf_counter()
        picked = self.stepping.load_pipeline("pred", strategy="latest_compatible")
        times["latest_compatible"] = time.perf_counter() - start
        assert picked["weights"] == Weights(0).op_version
        start = time.perf_counter()
        try:
            self.hopeless.load_pipeline("pred", strategy="latest_compatible")
        except VersionError:
            times["latest_compatible, no set"] = time.perf_counter() - start
        else:
            raise AssertionError("weights of changed code fitted a head")
        return times

    def close(self) -> None:
        for app in (self.app, self.stepping, self.hopeless):
            app.close()


@contextlib.contextmanager
def lmdb_histories() -> Iterator[Callable[[str, int], History]]:
    yield History


@contextlib.contextmanager
def object_histories() -> Iterator[Callable[[str, int], History]]:
    """Histories in the object store on S3: one moto server, one bucket, a prefix per size."""
    import s3fs

    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests" / "support"))
    from chariots_test_s3 import moto_s3

    from chariots_fsspec import ObjectOpStore

    def build(directory: str, size: int) -> History:
        url = f"s3://{bucket}/{os.path.basename(directory)}"
        # The setup commits 1,000 versions at a time: log entries of ~1.5 MB, whose nodes the
        # next bulk commit reads at random. A cache that holds them all (~0.6 GB parsed at
        # 100,000) keeps it from reading them again and again; saves and loads read only the
        # newest entries, whatever the cache.
        return History(url, size, op_store=lambda: ObjectOpStore(url, cache_bytes=2 << 30))

    with moto_s3() as endpoint:
        bucket = f"history-{os.getpid()}"
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(bucket)
        yield build


# Each backend: a context giving build(directory, size) while the backend is up ("objects":
# the object store on S3, a local moto server).
HISTORY_BACKENDS: dict[str, Callable[[], contextlib.AbstractContextManager[Callable[[str, int], History]]]] = {
    "lmdb": lmdb_histories,
    "objects": object_histories,
}


def history_table(repeats: int, backends: list[str]) -> bool:
    ok = True
    for backend in backends:
        histories_on = HISTORY_BACKENDS[backend]
        with tempfile.TemporaryDirectory(prefix="bench_history_") as root, histories_on() as build:
            started = time.perf_counter()
            histories = {size: build(os.path.join(root, str(size)), size) for size in HISTORIES}
            print(
                f"history of one op on {backend}: built in {time.perf_counter() - started:.0f} s; "
                f"medians of {repeats} rounds, the sizes taking turns"
            )
            timings: dict[int, list[dict[str, float]]] = {size: [] for size in HISTORIES}
            for _ in range(repeats):
                for size, history in histories.items():
                    timings[size].append(history.timed())
            for history in histories.values():
                history.close()
        columns = list(timings[HISTORIES[0]][0])
        medians = {
            size: {c: statistics.median(t[c] for t in rounds) * 1000 for c in columns}
            for size, rounds in timings.items()
        }
        base = medians[HISTORIES[0]]
        print("  " + f"{'versions':>9}" + "".join(f"{column:>30}" for column in columns))
        for size, row in medians.items():
            cells = "".join(f"{row[c]:>19.2f} ms {row[c] / base[c]:5.2f}x" for c in columns)
            print(f"  {size:>9,}{cells}")
        for column in ("save", "load"):
            ratio = medians[10_000][column] / base[column]
            print(f"  {column} at 10,000 versions / at 10 = {ratio:.2f} (target <= {TARGET_HISTORY})")
            ok = ok and ratio <= TARGET_HISTORY
        print(f"  (latest_compatible considers at most {LATEST_COMPATIBLE_BOUND:,} versions of each op)")
    return ok


# -- metadata ------------------------------------------------------------------------------------
def records() -> list[list[OpVersionRecord]]:
    """``VERSIONS`` batches (one per save) of one new version of each of ``OPS`` ops."""
    return [
        [
            OpVersionRecord(
                f"op{op:03d}", f"{version:040x}", "c" * 40, "train", 1.0, f"ops/op{op}/{version}", "s" * 64, 1000
            )
            for op in range(OPS)
        ]
        for version in range(VERSIONS)
    ]


class StoreContender:
    """Writes and reads the records through ``LMDBOpStore``."""

    def __init__(self, directory: str) -> None:
        self.store = LMDBOpStore(os.path.join(directory, "store"))

    def write(self, batches: list[list[OpVersionRecord]]) -> None:
        for batch in batches:
            self.store.commit(Commit(batch))

    def read(self) -> int:
        return sum(len(self.store.op_versions(f"op{op:03d}")) for op in range(OPS))

    def close(self) -> None:
        self.store.close()


class RawContender:
    """Puts and range-reads the same JSON bytes with plain LMDB calls."""

    def __init__(self, directory: str, decode: bool) -> None:
        # The settings LMDBOpStore uses, so both pay the same fsyncs per commit.
        self.env = lmdb.open(os.path.join(directory, "raw"), map_size=64 * 1024 * 1024, max_dbs=2, metasync=True)
        self.db = self.env.open_db(b"versions")
        self.decode = decode

    def write(self, batches: list[list[OpVersionRecord]]) -> None:
        for batch in batches:
            encoded = [(to_json([r.op_name, r.version]), to_json(r)) for r in batch]
            with self.env.begin(write=True) as txn:
                for key, value in encoded:
                    txn.put(key, value, db=self.db)

    def read(self) -> int:
        count = 0
        for op in range(OPS):
            prefix = to_json([f"op{op:03d}"])[:-1] + b","
            with self.env.begin() as txn:
                cursor = txn.cursor(db=self.db)
                cursor.set_range(prefix)
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    if self.decode:
                        json.loads(value)
                    count += 1
        return count

    def close(self) -> None:
        self.env.close()


def metadata_contenders(batches: list[list[OpVersionRecord]]) -> dict[str, Contender]:
    """Write then read phases of each metadata contender, opened before the clock starts."""
    makers: dict[str, Callable[[str], Any]] = {
        "raw lmdb (bytes)": lambda directory: RawContender(directory, decode=False),
        "raw lmdb + json.loads": lambda directory: RawContender(directory, decode=True),
        "LMDBOpStore": StoreContender,
    }
    opened: dict[str, Any] = {}

    def phases(name: str, make: Callable[[str], Any]) -> dict[str, Contender]:
        def open_it(directory: str) -> Any:
            opened[name] = make(directory)
            return opened[name]

        def read_and_close(contender: Any) -> None:
            count = contender.read()
            contender.close()
            assert count == OPS * VERSIONS, count

        # The read runs on what the write left: both phases share one directory.
        return {
            f"write: {name}": (open_it, lambda contender: contender.write(batches)),
            f"read: {name}": (lambda directory: opened[name], read_and_close),
        }

    contenders: dict[str, Contender] = {}
    for name, make in makers.items():
        contenders.update(phases(name, make))
    return contenders


def ratio_line(name: str, milliseconds: float, reference: float, reference_name: str) -> str:
    return f"  {name:<28} {milliseconds:9.2f} ms   {milliseconds / reference:6.2f}x {reference_name}"


def round_trip_section(repeats: int) -> bool:
    X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    size = len(dill.dumps(model)) / 1024
    print(f"10-tree random forest, {size:.0f} KiB as dill; medians of {repeats} interleaved repeats")

    contenders: dict[str, Contender] = {
        "floor (durable, same syncs)": (floor_prepare, floor_round_trip(model)),
        "chariots save+load_pipeline": (chariots_prepare((X, y)), chariots_round_trip),
    }
    try:
        import mlflow  # noqa: F401
    except ImportError:
        mlflow_installed = False
    else:
        mlflow_installed = True
        contenders["mlflow, requirements given"] = mlflow_round_trip(model, infer_requirements=False)
    times = interleaved_ms(contenders, repeats)
    floor, chariots = times["floor (durable, same syncs)"], times["chariots save+load_pipeline"]
    print("save + load of the model")
    for name, milliseconds in times.items():
        print(ratio_line(name, milliseconds, floor, "floor"))
    ok = chariots <= TARGET_VS_FLOOR * floor
    if not mlflow_installed:
        print("  mlflow: not installed, skipped (pip install 'chariots[bench]')")
    else:
        # Seconds per call: fewer repeats, run on their own.
        slow = {"mlflow": mlflow_round_trip(model, infer_requirements=True)}
        default = interleaved_ms(slow, min(repeats, 3))["mlflow"]
        lean = times["mlflow, requirements given"]
        print(ratio_line("mlflow log+load_model", default, floor, "floor"))
        print(
            f"  chariots is {default / chariots:.0f}x faster than mlflow as used by default "
            f"(target >= {TARGET_VS_MLFLOW:.0f}x), {lean / chariots:.1f}x with its requirements given"
        )
        ok = ok and default >= TARGET_VS_MLFLOW * chariots
    print(f"  chariots / floor = {chariots / floor:.2f} (target <= {TARGET_VS_FLOOR})")
    return ok


def records_section(repeats: int) -> bool:
    metadata = interleaved_ms(metadata_contenders(records()), repeats)
    print(f"{OPS * VERSIONS:,} version records: written in {VERSIONS} transactions, read back per op")
    for phase in ("write", "read"):
        raw = metadata[f"{phase}: raw lmdb (bytes)"]
        for name, milliseconds in metadata.items():
            if name.startswith(phase):
                print(ratio_line(name, milliseconds, raw, "raw"))
    ratio = metadata["read: LMDBOpStore"] / metadata["read: raw lmdb + json.loads"]
    print(f"  reading through the store / raw + json.loads = {ratio:.2f} (target <= {TARGET_READS})")
    return ratio <= TARGET_READS


def big_section(repeats: int) -> bool:
    import big_models  # beside this script: the child processes run it

    return big_models.section(repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--history-on", default=",".join(HISTORY_BACKENDS), help="comma-separated stores of the history table"
    )
    args = parser.parse_args(argv)
    sections = {
        "roundtrip": round_trip_section,
        "history": lambda repeats: history_table(repeats, args.history_on.split(",")),
        "records": records_section,
        "big": big_section,
    }
    ok = True
    for name in args.only.split(","):
        ok = sections[name](args.repeats) and ok
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
