"""The object op store's state as of one log entry, and how a commit builds the next one.

The state is one map (see :mod:`._object_trees`) whose root the entry names, with keys:

=======================================  ===================================================
key                                      value
=======================================  ===================================================
``["v", op, version key]``               ``{"p": position of the version's record or null,
                                         "l": [refs of the links into that version]}``
``["a", op]``                            chain: the positions of the op's versions
``["c", op, policy, code key]``          chain: those whose code has that key under the policy
``["j", kind, name]``                    chain: the positions of a journal's records
=======================================  ===================================================

A record's position is its ref in the entry that wrote it (``ops``, ``links`` or ``journal``
list), so the newest record has the largest one. A version saved again gets a new position:
its old one leaves its chains and the new one goes first. Everything read is checked against
what the state says it is (the op, version, code key, journal a record is filed under): a
mismatch is damage, reported as :class:`~chariots_core.errors.IntegrityError` naming the entry.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import cattrs

from chariots_core.errors import IntegrityError, StoreError
from chariots_core.op_store.records import (
    POLICIES,
    Commit,
    LinkRecord,
    OpVersionRecord,
    code_key,
    from_plain,
    to_plain,
    version_key,
)

from ._object_bucket import FORMAT, seal
from ._object_log import Entry, ObjectLog
from ._object_trees import INDEX_BITS, Draft, assign, chain_push, chain_remove, key, lookup, ref, split_ref

__all__ = ["Building", "State", "chain_key", "code_chain_key", "journal_key", "version_map_key"]

_Record = TypeVar("_Record")
_DECODING_ERRORS = (TypeError, ValueError, KeyError, cattrs.BaseValidationError)
_BATCH = 256  # records decoded per batch of entries read at once


def version_map_key(op_name: str, version: str) -> str:
    return key("v", op_name, version_key(version))


def chain_key(op_name: str) -> str:
    return key("a", op_name)


def code_chain_key(op_name: str, policy: str, code: str) -> str:
    return key("c", op_name, policy, code)


def journal_key(kind: str, name: str) -> str:
    return key("j", kind, name)


class State:
    """The store as it was after log entry ``seq`` (0: empty); reads nodes and records by ref."""

    def __init__(self, log: ObjectLog, seq: int) -> None:
        self.log, self.seq = log, seq
        self.root: int | None = log.entry(seq).root if seq else None

    # -- the Nodes protocol of _object_trees ---------------------------------------------------
    def node(self, ref_: int) -> Any:
        return self._item(ref_, "nodes")

    def damaged(self, ref_: int, detail: str) -> IntegrityError:
        return self.log.damaged_item(ref_, detail)

    def _item(self, ref_: int, kind: str, held: Mapping[int, Entry] | None = None) -> Any:
        """Item ``ref_`` of the ``kind`` list of its entry (taken from ``held`` if there)."""
        seq, index = split_ref(ref_)
        if not 1 <= seq <= self.seq:
            raise IntegrityError(
                f"{self.log.where(self.seq)} refers to log entry {seq}, which it cannot: the store is damaged"
            )
        entry = held.get(seq) if held else None
        items = getattr(entry or self.log.entry(seq), kind)
        if index >= len(items):
            raise self.damaged(ref_, f"the entry has only {len(items)} {kind}")
        return items[index]

    def prefetch(self, refs: Iterable[int]) -> dict[int, Entry]:
        """The entries holding ``refs``, read at once rather than one by one as they are used."""
        return self.log.entries({seq for seq, _ in map(split_ref, refs) if 1 <= seq <= self.seq})

    def batches(self, refs: list[int]) -> Iterator[tuple[int, Mapping[int, Entry]]]:
        """Each of ``refs`` with the entries of its batch, read at once and held while it is used
        (however small the cache of entries: a long listing never reads one twice)."""
        for start in range(0, len(refs), _BATCH):
            batch = refs[start : start + _BATCH]
            held = self.prefetch(batch)
            for ref_ in batch:
                yield ref_, held

    # -- map values ------------------------------------------------------------------------------
    def version_entry(self, op_name: str, version: str) -> dict[str, Any] | None:
        found = lookup(self, self.root, version_map_key(op_name, version))
        if found is not None and not (isinstance(found, dict) and isinstance(found.get("l"), list) and "p" in found):
            raise IntegrityError(
                f"{self.log.where(self.seq)}: the index of version {version!r} of op {op_name!r} is malformed ({found!r})"
            )
        return found

    def chain(self, chain_name: str) -> dict[str, Any] | None:
        found = lookup(self, self.root, chain_name)
        if found is not None and not (
            isinstance(found, dict) and isinstance(found.get("t"), list) and "r" in found and "h" in found
        ):
            raise IntegrityError(f"{self.log.where(self.seq)}: the listing {chain_name} is malformed ({found!r})")
        return found

    # -- records ---------------------------------------------------------------------------------
    def op_record(
        self, position: int, op_name: str, version: str | None = None, held: Mapping[int, Entry] | None = None
    ) -> OpVersionRecord:
        """The version record at ``position``, checked to be one of ``op_name`` (and ``version``)."""
        try:
            record = from_plain(self._item(position, "ops", held), OpVersionRecord)
        except _DECODING_ERRORS as exc:
            raise self.damaged(position, f"not a valid OpVersionRecord ({exc})") from exc
        if record.op_name != op_name or (version is not None and version_key(record.version) != version_key(version)):
            wanted = f"op {op_name!r}" + ("" if version is None else f" version {version_key(version)!r}")
            raise self.damaged(
                position, f"the record filed under {wanted} is of op {record.op_name!r} version {record.version!r}"
            )
        return record

    def op_records(self, positions: list[int], op_name: str) -> list[OpVersionRecord]:
        return [self.op_record(position, op_name, held=held) for position, held in self.batches(positions)]

    def link(self, ref_: int, op_name: str, version: str, held: Mapping[int, Entry] | None = None) -> LinkRecord:
        """The link at ``ref_``, checked to lead into ``version`` of ``op_name``."""
        item = self._item(ref_, "links", held)
        if not (isinstance(item, list) and len(item) == 4 and all(isinstance(part, str) for part in item)):
            raise self.damaged(ref_, f"not a link ({str(item)[:80]!r})")
        link = LinkRecord(*item)
        if link.downstream_op != op_name or version_key(link.downstream_version) != version_key(version):
            raise self.damaged(
                ref_, f"the link filed under op {op_name!r} version {version!r} leads into {link.downstream_op!r}"
            )
        return link

    def links(self, op_name: str, version: str) -> list[LinkRecord]:
        entry = self.version_entry(op_name, version)
        refs = [] if entry is None else entry["l"]
        return [self.link(ref_, op_name, version, held) for ref_, held in self.batches(refs)]

    def journal_records(self, positions: list[int], kind: str, name: str, record_type: type[_Record]) -> list[_Record]:
        """The journal records at ``positions``, checked to be ones of journal ``kind`` of ``name``."""
        records = []
        for position, held in self.batches(positions):
            item = self._item(position, "journal", held)
            if not (isinstance(item, list) and len(item) == 3) or item[:2] != [kind, name]:
                raise self.damaged(position, f"the record filed in the {kind} journal of {name!r} is not one of it")
            try:
                records.append(from_plain(item[2], record_type))
            except _DECODING_ERRORS as exc:
                raise self.damaged(position, f"not a valid {record_type.__name__} ({exc})") from exc
        return records


class Building(State):
    """The entry a commit writes on top of ``base``: its records, and the nodes it changes."""

    def __init__(self, base: State) -> None:
        self.log, self.seq, self.base = base.log, base.seq + 1, base
        self.root = base.root
        self.draft = Draft(self.seq, base)
        self.pending: dict[str, list[Any]] = {"ops": [], "links": [], "journal": [], "nodes": self.draft.nodes}

    def _item(self, ref_: int, kind: str, held: Mapping[int, Entry] | None = None) -> Any:
        seq, index = split_ref(ref_)
        return self.pending[kind][index] if seq == self.seq else self.base._item(ref_, kind, held)

    def prefetch(self, refs: Iterable[int]) -> dict[int, Entry]:
        return self.base.prefetch(ref_ for ref_ in refs if split_ref(ref_)[0] != self.seq)

    def _append(self, kind: str, item: Any) -> int:
        items = self.pending[kind]
        if len(items) >= 1 << INDEX_BITS:
            raise StoreError(f"a commit may hold at most {1 << INDEX_BITS} {kind}; split it into several commits")
        items.append(item)
        return ref(self.seq, len(items) - 1)

    def _set(self, map_key: str, value: Any) -> None:
        self.root = assign(self.draft, self.root, map_key, value)

    def _chains_of(self, record: OpVersionRecord) -> list[str]:
        codes = [code_chain_key(record.op_name, policy, code_key(record.code_version, policy)) for policy in POLICIES]
        return [chain_key(record.op_name), *codes]

    def apply(self, commit: Commit) -> None:
        """Add every record of ``commit`` (see :class:`~chariots_core.op_store.records.Commit`)."""
        for record in commit.ops:
            position = self._append("ops", to_plain(record))
            indexed = self.version_entry(record.op_name, record.version) or {"p": None, "l": []}
            if indexed["p"] is not None:  # saved again: it leaves its old place in every listing
                replaced = self.op_record(indexed["p"], record.op_name, record.version)
                for chain_name in self._chains_of(replaced):
                    self._set(chain_name, chain_remove(self.draft, self.chain(chain_name), indexed["p"], indexed["p"]))
            for chain_name in self._chains_of(record):
                self._set(chain_name, chain_push(self.draft, self.chain(chain_name), position))
            self._set(version_map_key(record.op_name, record.version), {**indexed, "p": position})
        for link in commit.links:
            op, version = link.downstream_op, link.downstream_version
            if link in self.links(op, version):
                continue
            indexed = self.version_entry(op, version) or {"p": None, "l": []}
            new = self._append("links", [link.upstream_op, link.upstream_version, op, version])
            self._set(version_map_key(op, version), {**indexed, "l": [*indexed["l"], new]})
        for append in commit.journal:
            position = self._append("journal", [append.kind, append.name, to_plain(append.record)])
            name = journal_key(append.kind, append.name)
            self._set(name, chain_push(self.draft, self.chain(name), position))

    def sealed(self, commit_id: str) -> bytes:
        """The entry's bytes (see :func:`._object_log.seal`)."""
        body = {
            "format": FORMAT,
            "seq": self.seq,
            "commit": commit_id,
            "saved_at": time.time(),
            "writer": f"{socket.gethostname()}/{os.getpid()}",
            "root": self.root,
            **self.pending,
        }
        try:
            return seal("chariots-log", body)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot encode a record of this commit for {self.log.store}: {exc}") from exc
