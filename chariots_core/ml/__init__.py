"""Machine-learning ops: modes, the base op for any framework, and model serializers.

scikit-learn and Keras ops live in the ``chariots_sklearn`` and ``chariots_keras`` backends.
"""

from ..pipelines.serializers import (
    BaseSerializer,
    CSVSerializer,
    DillSerializer,
    JSONSerializer,
    StreamingSerializer,
    WrongTypeError,
)
from .ops import BaseMLOp, MLMode, MLOpDefinitionError

__all__ = [
    "MLMode",
    "BaseMLOp",
    "MLOpDefinitionError",
    "BaseSerializer",
    "StreamingSerializer",
    "DillSerializer",
    "JSONSerializer",
    "CSVSerializer",
    "WrongTypeError",
]
