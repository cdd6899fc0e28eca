"""Small ops shared by the core tests (importable through pytest's ``pythonpath``).

The names follow chariots 0.2's documentation examples: their nodes are named ``addoneop``,
``isoddop`` and ``scaleop``.
"""

from __future__ import annotations

import json
from typing import ClassVar

from chariots_core import BaseOp, LoadableOp


class AddOneOp(BaseOp):
    """Adds one."""

    def execute(self, value):
        return value + 1


class IsOddOp(BaseOp):
    """Whether a number is odd."""

    def execute(self, value):
        return value % 2 == 1


class ScaleOp(LoadableOp):
    """Multiplies by a saved factor: a plain loadable op, whose version never changes with its state."""

    def __init__(self, factor=1):
        super().__init__()
        self.factor = factor

    def execute(self, xs):
        return [x * self.factor for x in xs]

    def serialize(self):
        return json.dumps(self.factor).encode()

    def load(self, serialized_object):
        self.factor = json.loads(serialized_object)


class StreamedOp(LoadableOp):
    """Holds bytes and knows only the streaming pair (``serialize_to``/``load_from``); records the
    first bytes of every state it is given to load, in ``StreamedOp.loads``."""

    loads: ClassVar[list[bytes]] = []

    def __init__(self, state=b""):
        super().__init__()
        self.state = state

    def execute(self, value):
        return len(self.state)

    def serialize_to(self, file):
        for start in range(0, len(self.state), 1 << 20):
            file.write(memoryview(self.state)[start : start + (1 << 20)])

    def load_from(self, file):
        data = file.read()
        StreamedOp.loads.append(data[:8])
        self.state = data
