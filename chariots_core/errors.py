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
    │                                   an op returned the wrong number of outputs, or an op
    │                                   failed where its own exception cannot travel (HTTP,
    │                                   worker processes): ``error_type`` keeps its type name
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

An op that raises reaches an in-process caller as its own exception (``except
ZeroDivisionError`` works), with a PEP 678 note naming the node and the pipeline; the failing
node's name is read back with :func:`failed_node`. Where the exception itself cannot travel (an
HTTP response, a job record written by a worker process), :func:`describe_failure` gives its
portable description, and the other side raises a :class:`NodeExecutionError` that keeps the
original type's name::

    try:
        app.call_pipeline("divide", 0)
    except ZeroDivisionError as exc:
        failed_node(exc)        # "divider"; exc.__notes__ names the node and pipeline
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
    "mark_failed_node",
    "failed_node",
    "describe_failure",
]

# The attribute under which an exception raised by an op remembers its node (innermost wins).
_FAILED_NODE = "_chariots_failed_node"


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
    """A node failed and its own exception cannot be raised here.

    :param node_name: the failing node.
    :param error_type: the name of the exception class the op raised elsewhere (on a server,
        in a worker process), e.g. ``"ZeroDivisionError"``; ``None`` when Chariots itself
        refused the node's result.
    """

    def __init__(self, message: str, node_name: str | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.node_name = node_name
        self.error_type = error_type

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.error_type}: {message}" if self.error_type else message


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


def mark_failed_node(exc: BaseException, node_name: str) -> None:
    """Record on ``exc`` that node ``node_name`` raised it, unless an inner node already did.

    A nested pipeline's node is inside the outer pipeline's node: the innermost one is the
    node whose op raised, so it is kept.
    """
    if failed_node(exc) is None:
        try:
            setattr(exc, _FAILED_NODE, node_name)
        except AttributeError:  # an exception class with __slots__ and no __dict__
            pass


def failed_node(exc: BaseException) -> str | None:
    """The name of the node whose op raised ``exc``, if a pipeline run raised it."""
    if isinstance(exc, NodeExecutionError) and exc.node_name is not None:
        return exc.node_name
    return getattr(exc, _FAILED_NODE, None)


def describe_failure(exc: BaseException) -> dict[str, str | None]:
    """What travels of ``exc`` where the exception itself cannot (HTTP bodies, job records).

    ``{"type": <class name>, "message": <message, then its notes>, "node": <failing node or None>}``.
    A :class:`NodeExecutionError` that stands for a remote exception keeps that exception's
    type name, so a failure crossing several hops is still described by its origin.
    """
    if isinstance(exc, NodeExecutionError):
        kind = exc.error_type or type(exc).__name__
        message = super(NodeExecutionError, exc).__str__()  # without the type prefix
    else:
        kind, message = type(exc).__name__, str(exc)
    notes = [note for note in getattr(exc, "__notes__", ()) if isinstance(note, str)]
    return {"type": kind, "message": " ".join([message, *(f"({note})" for note in notes)]), "node": failed_node(exc)}
