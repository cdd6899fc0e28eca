"""The iris quickstart: train, save, load, predict -- then watch Chariots refuse a stale model.

Run it from the repository root::

    python examples/iris/quickstart.py            # store in a temporary directory
    python examples/iris/quickstart.py --path ./iris_data   # keep the store to inspect it

The story, in four steps:

1. train the PCA and the random forest (``train_iris``), save them, load ``pred_iris``, predict;
2. retrain only the PCA: its retraining changes its MAJOR version, so loading ``pred_iris``
   raises ``VersionError`` (the forest was trained on the old PCA) and the app keeps serving
   the models it had;
3. change the PCA's code (3 components instead of 2, a MAJOR field) and restart the app on
   the same store: retraining only the PCA again leaves the forest stale, ``VersionError``;
4. retrain everything, save, load, predict.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence

import iris_ops
from iris_pipelines import make_pipelines

from chariots_core import Chariots, Pipeline, VersionedFieldDict, VersionError, VersionType

SAMPLE = [[1, 2, 3, 4]]

def pca_after_code_change() -> type[iris_ops.IrisPCA]:
    """The PCA as it is after you edit its code: same op name, 3 components instead of 2."""

    class IrisPCA(iris_ops.IrisPCA):
        model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 3})

    return IrisPCA


def _majors(versions: dict) -> str:
    return ", ".join(f"{name} (major {version.major[:7]})" for name, version in versions.items())


def _expect_version_error(app: Chariots, pipeline: Pipeline) -> None:
    try:
        app.load_pipeline(pipeline)
    except VersionError as exc:
        print(f"   load_pipeline({pipeline.name}) raises VersionError:")
        for line in str(exc).splitlines():
            print(textwrap.fill(line, 100, initial_indent="     | ", subsequent_indent="     |     "))
        return
    raise SystemExit(f"expected load_pipeline({pipeline.name}) to raise VersionError, it loaded")


def _train_and_save(app: Chariots, pipeline: Pipeline, what: str) -> None:
    app.call_pipeline(pipeline)
    app.save_pipeline(pipeline)
    print(f"   call_pipeline({pipeline.name}) + save_pipeline({pipeline.name}): {what}")


def _load_and_predict(app: Chariots, pipeline: Pipeline) -> None:
    loaded = app.load_pipeline(pipeline)
    print(f"   load_pipeline({pipeline.name}) loads {_majors(loaded)}")
    value = app.call_pipeline(pipeline, SAMPLE).value
    print(f"   call_pipeline({pipeline.name}, {SAMPLE}) -> predicted class {value}")


def run_story(path: str) -> None:
    """Tell the whole story with apps on the store at ``path`` (an LMDB op store and files)."""
    train_iris, train_pca, pred_iris = make_pipelines(iris_ops.IrisPCA)
    with Chariots([train_iris, train_pca, pred_iris], path=path) as app:
        print("\n1. Train both models, save them, load the prediction pipeline, predict")
        _train_and_save(app, train_iris, "PCA and forest fitted, saved with the link PCA -> forest")
        _load_and_predict(app, pred_iris)

        print("\n2. Retrain only the PCA (IrisPCA.training_update_version is MAJOR)")
        _train_and_save(app, train_pca, "a new PCA, with a new major version, is saved")
        _expect_version_error(app, pred_iris)
        value = app.call_pipeline(pred_iris, SAMPLE).value
        print(f"   pred_iris keeps serving the models it had loaded: {SAMPLE} -> class {value}")

    train_iris, train_pca, pred_iris = make_pipelines(pca_after_code_change())
    with Chariots([train_iris, train_pca, pred_iris], path=path) as app:
        print("\n3. Edit IrisPCA (n_components 2 -> 3, a MAJOR field), restart the app on the same store")
        _train_and_save(app, train_pca, "the new PCA code is trained and saved")
        _expect_version_error(app, pred_iris)

        print("\n4. Retrain everything, save, load, predict")
        _train_and_save(app, train_iris, "PCA and forest retrained together, link recorded")
        _load_and_predict(app, pred_iris)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the quickstart on an LMDB op store and local files (in a temporary directory by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="keep the store in this directory instead of a temporary one")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chariots-iris-") as scratch:
        path = args.path or scratch
        print(f"Chariots iris quickstart -- store: {path} (LMDB op store + model files)")
        run_story(path)
    print(f"\nDone: the four steps took {time.perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
