"""The op store: which versions of which ops were saved, what they were built on, and the
rules that decide which saved versions a pipeline may load."""

from .store import MemoryOpStore, OpStore

__all__ = ["OpStore", "MemoryOpStore"]
