"""The persistent structures of the object op store: a hash map and ordered chains of positions.

The object store's state at a commit is a tree of immutable *nodes* (JSON values). A commit
never changes a node: it adds the nodes on the paths it changes (path copying) to its own log
entry, and every node that did not change is shared with the states before. So a commit writes
O(depth) nodes per key it changes, and a reader of any state reaches any key in O(depth) node
reads, whatever the history. Nodes are named by a *ref*, an int: the sequence number of the log
entry holding the node and its index in that entry (:func:`ref`); records of an entry (op
versions, links, journal items) are named the same way, and their refs are their *positions*:
a later record has a larger position.

Two structures, both plain functions over a :class:`Nodes` source:

- **The map** (a hash array mapped trie): string keys to JSON values. A node is a bucket
  ``{"e": {key: value}}`` of at most :data:`BUCKET` keys, or a branch ``{"s": {hex digit: ref}}``
  that routes by the next hex digit of the key's blake2b hash. A bucket splits into a branch
  when it overflows. Depth: about log16(keys / BUCKET).
- **Chains**: sets of positions read newest (largest) first, with limit and a ``before`` to start
  after, as the store's listings need. A chain is a map value ``{"t": tail, "r": root ref, "h":
  height}``: the newest positions in a short ascending list kept in the value itself (so the
  newest one costs no node read), older ones in a B-tree whose leaves ``{"k": [positions]}``
  come from flushed tails and whose inner nodes ``{"b": [lower bounds], "c": [refs]}`` hold at
  most :data:`FAN` children. Positions are only ever added at the newest end and removed
  anywhere (a version saved again moves to the front); a removal leaves the lower bounds as they
  were, which still route correctly (every position of child ``i`` is below bound ``i + 1``),
  and drops emptied nodes, so the height stays within log_FAN of the positions ever added.

A :class:`Draft` is the entry a commit is building: the nodes it adds may be changed in place
(a commit of 1,000 records copies each path once, not 1,000 times).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
from collections.abc import Iterator
from typing import Any, Protocol

from chariots_core.errors import IntegrityError

__all__ = [
    "BUCKET",
    "EMPTY_CHAIN",
    "FAN",
    "INDEX_BITS",
    "TAIL",
    "Draft",
    "Nodes",
    "assign",
    "chain_contains",
    "chain_push",
    "chain_remove",
    "chain_walk",
    "items",
    "key",
    "lookup",
    "ref",
    "split_ref",
]

INDEX_BITS = 20  # a ref is seq << INDEX_BITS | index: an entry holds at most 2**20 items of a kind
BUCKET = 16  # keys per map bucket before it splits
TAIL = 8  # positions per B-tree leaf; a chain's tail flushes TAIL of them at 2 * TAIL
FAN = 32  # children per inner B-tree node
EMPTY_CHAIN: dict[str, Any] = {"t": [], "r": None, "h": 0}


def ref(seq: int, index: int) -> int:
    """The ref of item ``index`` of log entry ``seq``."""
    return seq << INDEX_BITS | index


def split_ref(value: int) -> tuple[int, int]:
    """``(seq, index)`` of a ref."""
    return value >> INDEX_BITS, value & ((1 << INDEX_BITS) - 1)


@functools.lru_cache(maxsize=65536)  # the same keys come back on every save and load
def key(*parts: str) -> str:
    """A map key: JSON, so that no two different tuples of names give the same key."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


class Nodes(Protocol):
    """Where nodes are read from (the log, as of one state), and how damage is reported."""

    def node(self, ref: int) -> Any:
        """The node named ``ref``."""

    def damaged(self, ref: int, detail: str) -> IntegrityError:
        """The error for the item named ``ref``, which is not what the structure says."""


class Draft:
    """The nodes a commit adds to entry ``seq``; they may be changed until it is written."""

    def __init__(self, seq: int, base: Nodes) -> None:
        self.seq, self.base = seq, base
        self.nodes: list[Any] = []

    def node(self, ref_: int) -> Any:
        seq, index = split_ref(ref_)
        return self.nodes[index] if seq == self.seq else self.base.node(ref_)

    def damaged(self, ref_: int, detail: str) -> IntegrityError:
        return self.base.damaged(ref_, detail)

    def add(self, node: Any) -> int:
        """A new node of this entry."""
        self.nodes.append(node)
        return ref(self.seq, len(self.nodes) - 1)

    def put(self, ref_: int | None, node: Any) -> int:
        """``node`` in place of ``ref_``: changed in place if this entry holds it, else added."""
        if ref_ is not None and split_ref(ref_)[0] == self.seq:
            self.nodes[split_ref(ref_)[1]] = node
            return ref_
        return self.add(node)


def _shape(nodes: Nodes, ref_: int, *fields: str) -> Any:
    """The node ``ref_``, checked to be a dict with one of ``fields`` (the first one found)."""
    node = nodes.node(ref_)
    if isinstance(node, dict):
        for field in fields:
            if field in node:
                return node
    raise nodes.damaged(ref_, f"a node that should hold {' or '.join(map(repr, fields))} holds {str(node)[:80]!r}")


# -- the map ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def _hash(map_key: str) -> str:
    return hashlib.blake2b(map_key.encode(), digest_size=16).hexdigest()


def lookup(nodes: Nodes, root: int | None, map_key: str) -> Any:
    """The value of ``map_key`` in the map at ``root``, or ``None``."""
    digits, depth, at = _hash(map_key), 0, root
    while at is not None:
        node = _shape(nodes, at, "e", "s")
        if "e" in node:
            return node["e"].get(map_key)
        at = node["s"].get(digits[depth])
        depth += 1
    return None


def assign(draft: Draft, root: int | None, map_key: str, value: Any) -> int:
    """The root of the map at ``root`` with ``map_key`` set to ``value``."""
    return _assign(draft, root, map_key, _hash(map_key), 0, value)


def _assign(draft: Draft, at: int | None, map_key: str, digits: str, depth: int, value: Any) -> int:
    if at is None:
        return draft.add({"e": {map_key: value}})
    node = _shape(draft, at, "e", "s")
    if "s" in node:
        branches = dict(node["s"])
        branches[digits[depth]] = _assign(draft, branches.get(digits[depth]), map_key, digits, depth + 1, value)
        return draft.put(at, {"s": branches})
    entries = {**node["e"], map_key: value}
    if len(entries) <= BUCKET or depth >= len(digits):
        return draft.put(at, {"e": entries})
    groups: dict[str, dict[str, Any]] = {}
    for name, item in entries.items():
        groups.setdefault(_hash(name)[depth], {})[name] = item
    return draft.put(at, {"s": {digit: draft.add({"e": group}) for digit, group in groups.items()}})


def items(nodes: Nodes, root: int | None) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` of the map at ``root`` (in no particular order)."""
    pending = [] if root is None else [root]
    while pending:
        node = _shape(nodes, pending.pop(), "e", "s")
        if "e" in node:
            yield from node["e"].items()
        else:
            pending.extend(node["s"].values())


# -- chains ----------------------------------------------------------------------------------
def chain_push(draft: Draft, chain: dict[str, Any] | None, position: int) -> dict[str, Any]:
    """``chain`` with ``position`` (larger than every position in it) added as its newest."""
    chain = chain or EMPTY_CHAIN
    tail, root, height = [*chain["t"], position], chain["r"], chain["h"]
    if len(tail) >= 2 * TAIL:
        leaf, low, tail = draft.add({"k": tail[:TAIL]}), tail[0], tail[TAIL:]
        if root is None:
            root, height = draft.add({"b": [low], "c": [leaf]}), 2
        else:
            parts = _append(draft, root, height, leaf, low)
            if len(parts) > 1:
                root, height = draft.add({"b": [low for low, _ in parts], "c": [part for _, part in parts]}), height + 1
            else:
                root = parts[0][1]
    return {"t": tail, "r": root, "h": height}


def _append(draft: Draft, at: int, height: int, leaf: int, low: int) -> list[tuple[int, int]]:
    """``(lower bound, ref)`` of what replaces inner node ``at`` once ``leaf`` is its newest
    leaf: one node, or two when it overflowed (the older one full)."""
    node = _shape(draft, at, "b")
    bounds, children = list(node["b"]), list(node["c"])
    if height == 2:
        bounds.append(low)
        children.append(leaf)
    else:
        parts = _append(draft, children[-1], height - 1, leaf, low)
        bounds[-1:] = [bounds[-1]] + [low for low, _ in parts[1:]]
        children[-1:] = [part for _, part in parts]
    if len(children) <= FAN:
        return [(bounds[0], draft.put(at, {"b": bounds, "c": children}))]
    older = draft.put(at, {"b": bounds[:FAN], "c": children[:FAN]})
    return [(bounds[0], older), (bounds[FAN], draft.add({"b": bounds[FAN:], "c": children[FAN:]}))]


def chain_remove(draft: Draft, chain: dict[str, Any] | None, position: int, owner: int) -> dict[str, Any]:
    """``chain`` without ``position``.

    :param owner: the ref reported as damaged if ``position`` is not in the chain.
    """
    chain = chain or EMPTY_CHAIN
    if position in chain["t"]:
        return {**chain, "t": [item for item in chain["t"] if item != position]}
    root, height = chain["r"], chain["h"]
    if root is None:
        raise draft.damaged(owner, f"position {position} is missing from a listing that should hold it")
    root = _remove(draft, root, height, position, owner)
    while root is not None and height > 2 and len(_shape(draft, root, "b")["c"]) == 1:
        root, height = _shape(draft, root, "b")["c"][0], height - 1
    return {"t": chain["t"], "r": root, "h": height if root is not None else 0}


def _remove(draft: Draft, at: int, height: int, position: int, owner: int) -> int | None:
    if height == 1:
        positions = _shape(draft, at, "k")["k"]
        if position not in positions:
            raise draft.damaged(owner, f"position {position} is missing from a listing that should hold it")
        rest = [item for item in positions if item != position]
        return draft.put(at, {"k": rest}) if rest else None
    node = _shape(draft, at, "b")
    bounds, children = list(node["b"]), list(node["c"])
    index = bisect.bisect_right(bounds, position) - 1
    if index < 0:
        raise draft.damaged(owner, f"position {position} is missing from a listing that should hold it")
    child = _remove(draft, children[index], height - 1, position, owner)
    if child is None:
        del bounds[index], children[index]
    else:
        children[index] = child
    return draft.put(at, {"b": bounds, "c": children}) if children else None


def chain_walk(nodes: Nodes, chain: dict[str, Any] | None, before: int | None = None) -> Iterator[int]:
    """The positions of ``chain`` newest first, only those below ``before`` if given.

    Lazy: reads the tree's nodes as the walk reaches them.
    """
    if chain is None:
        return
    for position in reversed(chain["t"]):
        if before is None or position < before:
            yield position
    if chain["r"] is not None:
        yield from _walk(nodes, chain["r"], chain["h"], before)


def _walk(nodes: Nodes, at: int, height: int, before: int | None) -> Iterator[int]:
    if height == 1:
        for position in reversed(_shape(nodes, at, "k")["k"]):
            if before is None or position < before:
                yield position
        return
    node = _shape(nodes, at, "b")
    bounds, children = node["b"], node["c"]
    start = len(children) - 1 if before is None else bisect.bisect_right(bounds, before) - 1
    for index in range(start, -1, -1):
        # Every position of the children before ``start`` is below its bound, so below ``before``.
        yield from _walk(nodes, children[index], height - 1, before if index == start else None)


def chain_contains(nodes: Nodes, chain: dict[str, Any] | None, position: int) -> bool:
    """Whether ``position`` is in ``chain``."""
    if chain is None:
        return False
    if position in chain["t"]:
        return True
    at, height = chain["r"], chain["h"]
    while at is not None and height > 1:
        node = _shape(nodes, at, "b")
        index = bisect.bisect_right(node["b"], position) - 1
        at, height = (node["c"][index] if index >= 0 else None), height - 1
    return at is not None and position in _shape(nodes, at, "k")["k"]
