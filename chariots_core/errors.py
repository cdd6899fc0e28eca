"""Every error Chariots raises on purpose.

The hierarchy::

    ChariotsError                       root: catch this to catch everything Chariots raises
    ├── VersionError (TypeError)        an op's saved version does not fit the ops around it
    ├── InvalidVersionError (ValueError)
    │                                   a malformed version string, digest or subversion name
    ├── BackendError (ImportError)      an optional backend is not installed
    ├── PipelineDefinitionError (ValueError)
    │   │                               a pipeline's nodes cannot form a valid DAG
    │   └── NotAPipelineError (TypeError)
    │                                   a runner was given something that is not a Pipeline
    ├── NodeExecutionError (RuntimeError)
    │                                   an op raised, or returned the wrong number of outputs
    ├── UnknownPipelineError (LookupError)
    │                                   no pipeline of that name in the app
    ├── NotSavedError (LookupError)     nothing was ever saved for what is being loaded
    ├── NotFittedError (RuntimeError)   a model op predicted before it was fitted or loaded
    ├── MLOpDefinitionError (TypeError, ValueError)
    │                                   an ML op is declared or created wrongly
    ├── StoreError (OSError)            the op store or saver cannot be used
    │   └── IntegrityError              stored bytes do not match their recorded sha256
    ├── SerializationError (ValueError) bytes cannot be turned back into an object
    │   └── WrongTypeError (TypeError)  a serializer was given an object its format cannot hold
    ├── WorkerError (RuntimeError)      async execution was asked for but cannot happen
    │   └── JobNotFoundError (LookupError)
    │                                   no job with that id
    ├── ConfigError (ValueError)        a configuration file or value is wrong
    ├── PictureError (ValueError)       data given to draw a picture or a status page is malformed
    └── SourceUnavailableError (OSError)
                                        an op's code-aware version needs source code that cannot be read

The HTTP layer adds three of its own in ``chariots_waitress.errors`` (server unreachable,
server cannot start, request refused); everything else crosses HTTP as the class above.

Each leaf also subclasses the builtin it refines, so ``except TypeError`` still catches a
``VersionError`` as it did in chariots 0.2.
"""

from __future__ import annotations

__all__ = [
    "ChariotsError",
    "VersionError",
    "InvalidVersionError",
    "BackendError",
    "PipelineDefinitionError",
    "NotAPipelineError",
    "NodeExecutionError",
    "UnknownPipelineError",
    "NotSavedError",
    "NotFittedError",
    "MLOpDefinitionError",
    "StoreError",
    "IntegrityError",
    "SerializationError",
    "WrongTypeError",
    "WorkerError",
    "JobNotFoundError",
    "ConfigError",
    "PictureError",
    "SourceUnavailableError",
]


class ChariotsError(Exception):
    """Base class of every error Chariots raises on purpose."""


class VersionError(ChariotsError, TypeError):
    """A saved op version is incompatible with the version of an op it depends on."""


class InvalidVersionError(ChariotsError, ValueError):
    """A version string, digest or subversion name is malformed, or a parsed one was extended."""


class BackendError(ChariotsError, ImportError):
    """An optional backend was asked for but its dependencies are not installed."""


class PipelineDefinitionError(ChariotsError, ValueError):
    """The nodes given to a pipeline do not form a valid DAG."""


class NotAPipelineError(PipelineDefinitionError, TypeError):
    """A runner (or a nested node) was given an object that is not a Pipeline."""


class NodeExecutionError(ChariotsError, RuntimeError):
    """An op failed while a pipeline ran; the message names the node."""

    def __init__(self, message: str, node_name: str | None = None) -> None:
        super().__init__(message)
        self.node_name = node_name


class UnknownPipelineError(ChariotsError, LookupError):
    """The app has no pipeline of the requested name."""


class NotSavedError(ChariotsError, LookupError):
    """Something was loaded that was never saved."""


class NotFittedError(ChariotsError, RuntimeError):
    """A machine-learning op was asked to predict before being fitted or loaded."""


class MLOpDefinitionError(ChariotsError, TypeError, ValueError):
    """A machine-learning op is declared or created wrongly (no model class, unknown mode...).

    It is both a ``TypeError`` and a ``ValueError``: the mistake is a wrong kind of object
    (``model_class`` is not a class) or a wrong value (``mode="train"``).
    """


class StoreError(ChariotsError, OSError):
    """The op store or the saver cannot read or write."""


class IntegrityError(StoreError):
    """Bytes read from a saver do not match the sha256 recorded when they were saved."""


class SerializationError(ChariotsError, ValueError):
    """Bytes could not be deserialized (or an object could not be serialized)."""


class WrongTypeError(SerializationError, TypeError):
    """A serializer was given an object its format cannot hold."""


class WorkerError(ChariotsError, RuntimeError):
    """Asynchronous execution was requested but cannot be done."""


class JobNotFoundError(WorkerError, LookupError):
    """No job has the requested id."""


class ConfigError(ChariotsError, ValueError):
    """A configuration value or file is invalid."""


class PictureError(ChariotsError, ValueError):
    """The data given to draw a picture (or a status page) is malformed."""


class SourceUnavailableError(ChariotsError, OSError):
    """An op versioned by its code (``SourceVersion``) has code whose source cannot be read."""
