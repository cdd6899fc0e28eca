"""Machine-learning ops: modes, the base op for any framework, and model serializers.

scikit-learn and Keras ops live in the ``chariots_sklearn`` and ``chariots_keras`` backends.
"""

from .ops import BaseMLOp, MLMode
from .serializers import BaseSerializer, CSVSerializer, DillSerializer, JSONSerializer

__all__ = ["MLMode", "BaseMLOp", "BaseSerializer", "DillSerializer", "JSONSerializer", "CSVSerializer"]
