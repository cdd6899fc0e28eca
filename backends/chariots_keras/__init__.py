"""Keras 3 ops: neural networks as versioned, saved and served pipeline ops.

    >>> from chariots_keras import KerasOp
    >>> class KerasLinear(KerasOp):
    ...     fit_params = VersionedFieldDict(VersionType.MAJOR, {"epochs": 3, "batch_size": 32})
    ...     def _init_model(self, *input_data_sets):
    ...         model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    ...         model.compile(loss="categorical_crossentropy", optimizer="adam")
    ...         return model

Importing this package imports Keras on the JAX backend unless you chose one (set
``KERAS_BACKEND`` before importing it, or import ``keras`` yourself first). Models are saved
in Keras's ``.keras`` format, so a model trained on one backend loads on another.
"""

from .op import KerasOp
from .serializer import KerasSerializer

__all__ = ["KerasOp", "KerasSerializer"]
