"""Small ops shared by the core tests (importable through pytest's ``pythonpath``).

The names follow chariots 0.2's documentation examples: their nodes are named ``addoneop``
and ``isoddop``.
"""

from __future__ import annotations

from chariots_core import BaseOp


class AddOneOp(BaseOp):
    """Adds one."""

    def execute(self, value):
        return value + 1


class IsOddOp(BaseOp):
    """Whether a number is odd."""

    def execute(self, value):
        return value % 2 == 1
