"""The op store: which versions of which ops were saved, what they were built on, and the
rules that decide which saved versions a pipeline may load."""

from .store import JobStore, MemoryOpStore, OpStore, OpStoreView

__all__ = ["OpStore", "OpStoreView", "JobStore", "MemoryOpStore"]
