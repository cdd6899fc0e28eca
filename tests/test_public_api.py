"""The public API exactly as DESIGN.md lists it: every name importable from where it says."""

from __future__ import annotations

import importlib

import pytest

PUBLIC_API = {
    "chariots_core": [
        "Pipeline", "Node", "BaseNode", "ReservedNodes", "BaseOp", "LoadableOp",
        "SequentialRunner", "BaseRunner", "OpCallBack", "PipelineCallback", "Version",
        "VersionType", "VersionedField", "VersionedFieldDict", "VersionableMeta", "OpStore",
        "Chariots", "PipelineResponse", "BaseWorkerPool", "JobStatus", "VersionError",
        "BackendError", "ChariotsConfig",
    ],
    "chariots_core.ml": ["MLMode", "BaseMLOp", "DillSerializer", "JSONSerializer", "CSVSerializer"],
    "chariots_sklearn": ["SKSupervisedOp", "SKUnsupervisedOp"],
    "chariots_keras": ["KerasOp"],
    "chariots_lmdb": ["LMDBOpStore"],
    "chariots_fsspec": ["FsspecSaver", "ObjectOpStore"],
    "chariots_multiprocess": ["MultiprocessWorkerPool"],
    "chariots_waitress": ["make_wsgi_app", "serve", "PipelinesClient"],
    "chariots_dask": ["DaskWorkerPool"],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_every_public_name_is_importable_and_listed(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in PUBLIC_API[module_name]:
        assert getattr(module, name) is not None, f"{module_name}.{name}"
        assert name in module.__all__, f"{name} missing from {module_name}.__all__"


def test_version_error_and_backend_error_refine_the_builtins_they_replace() -> None:
    from chariots_core import BackendError, VersionError
    from chariots_core.errors import ChariotsError

    assert issubclass(VersionError, ChariotsError) and issubclass(VersionError, TypeError)
    assert issubclass(BackendError, ChariotsError) and issubclass(BackendError, ImportError)
