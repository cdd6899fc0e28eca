"""The on-disk structures of the LMDB op store: checksummed values, a verified index, chains.

An environment of the store has two named sub-databases, ``index`` and ``entries``.

**Values.** Every value is ``crc32(key + body)`` (4 bytes, big-endian) followed by its JSON
``body``. A flipped byte in a value, or a value found under another key than the one it was
written under (a flipped byte in a key), fails the check and is reported as damage.

**The index** maps keys made by :func:`key` (JSON arrays of names, e.g. ``["version", "pca",
"<major>_<minor>_<patch>"]``) to ``{"n": <the next key of the index>, "v": <payload>}``: from a
sentinel entry (key ``\\x00``, which sorts first) every entry names the one after it. A key that
is not found is therefore *proven* absent (the entry before where it would sit names the entry
after it) and an entry lost to a damaged page is reported, never taken for one never written.

**Chains** are lists read newest first: a head in the index (``key("chain", *chain)`` ->
``{"newest", "oldest", "count"}``) and one entry per item in ``entries`` under the chain's
prefix and the item's position (8 bytes, big-endian) -> ``{"p": previous position, "n": next
position, "i": item}`` (0: none). A page is read by walking ``p`` from the head, or from the
entry of the ``before`` position: each entry must name the one it was reached from, the walk
must end at ``oldest``, and a walk over the whole chain must count ``count`` entries, so no
damage can make a page skip or lose an item silently. Removing an item relinks its neighbours.

Reading an entry is one B-tree lookup, whatever the length of the chain.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from typing import Any

from chariots_core.errors import IntegrityError, StoreError

__all__ = ["FORMAT", "SUBDATABASES", "MissingEntry", "Tables", "check_format", "key"]

FORMAT = 2  # bumped whenever the layout changes; a store of another format is refused
SUBDATABASES = ("index", "entries")
_CRC = struct.Struct(">I")
_POSITION = struct.Struct(">Q")
_SENTINEL = b"\x00"
_FORMAT_KEY = b'["meta","format"]'
_HEAD_KEY = b'["meta","head"]'
_LONGEST_NAME = 120  # bytes: longer names are replaced by their sha256, so keys stay < 511 bytes


def _short(name: str) -> str:
    if len(name.encode()) <= _LONGEST_NAME:
        return name
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def key(*parts: str) -> bytes:
    """The index key of ``parts`` (long names shortened); JSON, so no key is a prefix of another's parts."""
    return json.dumps([_short(str(part)) for part in parts], separators=(",", ":")).encode()


def _chain_prefix(chain: tuple[str, ...]) -> bytes:
    return key(*chain)[:-1] + b","


class MissingEntry(LookupError):
    """The entry a page was asked to start after is not in the chain."""


class Tables:
    """The index and chains of one environment, read and written in one transaction."""

    def __init__(self, txn: Any, dbs: dict[str, Any], where: str) -> None:
        self.txn, self.where = txn, where
        self._index, self._entries = dbs["index"], dbs["entries"]

    def damaged(self, what: str) -> IntegrityError:
        """The error for damage found in this store."""
        return IntegrityError(
            f"the LMDB op store at {self.where!r} is damaged: {what}. Restore the store from a backup"
        )

    # -- store-wide records ---------------------------------------------------------------
    def initialize(self) -> None:
        """Write what a new, empty store holds: the sentinel, the format and the head."""
        self._write(self._index, _SENTINEL, {"n": None, "v": None})
        self.put(_FORMAT_KEY, FORMAT)
        self.put(_HEAD_KEY, 0)

    def stored_format(self) -> Any:
        """The format number the store was written in."""
        return self.required(_FORMAT_KEY, "its format record")

    def head(self) -> int:
        """The last position handed out (0 in an empty store)."""
        return self.required(_HEAD_KEY, "its head record")

    def next_position(self) -> int:
        """Hand out a new position (the head moves to it)."""
        position = self.head() + 1
        self.put(_HEAD_KEY, position)
        return position

    # -- values ---------------------------------------------------------------------------
    def _read(self, db: Any, db_name: str, at: bytes) -> Any:
        value = self.txn.get(at, db=db)
        return None if value is None else self._decode(db_name, at, value)

    def _decode(self, db_name: str, at: bytes, value: bytes) -> Any:
        if len(value) < _CRC.size or _CRC.unpack_from(value)[0] != zlib.crc32(memoryview(value)[_CRC.size :], zlib.crc32(at)):
            raise self.damaged(f"the record under {bytes(at)[:200]!r} in {db_name!r} fails its checksum")
        try:
            return json.loads(value[_CRC.size :])
        except ValueError as exc:  # a checksum collision: as damaged as a failed checksum
            raise self.damaged(f"the record under {bytes(at)[:200]!r} in {db_name!r} is not JSON") from exc

    def _write(self, db: Any, at: bytes, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.txn.put(at, _CRC.pack(zlib.crc32(data, zlib.crc32(at))) + data, db=db)

    # -- the index ------------------------------------------------------------------------
    def get(self, at: bytes) -> Any:
        """The payload under ``at``, or ``None`` once proven absent."""
        body = self._read(self._index, "index", at)
        if body is not None:
            return body["v"]
        self._neighbours(at)
        return None

    def required(self, at: bytes, what: str) -> Any:
        """The payload under ``at``, which every store holds."""
        payload = self.get(at)
        if payload is None:
            raise self.damaged(f"{what} ({at.decode('latin-1')}) is missing")
        return payload

    def put(self, at: bytes, payload: Any) -> None:
        """Write the payload under ``at``, linking a new key into the index."""
        body = self._read(self._index, "index", at)
        if body is None:
            previous_key, previous, following = self._neighbours(at)
            previous["n"] = at.decode("latin-1")
            self._write(self._index, previous_key, previous)
            body = {"n": following}
        body["v"] = payload
        self._write(self._index, at, body)

    def _neighbours(self, at: bytes) -> tuple[bytes, dict[str, Any], str | None]:
        """The entry before where absent ``at`` sits (key, body) and the key after it, checked."""
        cursor = self.txn.cursor(db=self._index)
        if cursor.set_range(at):
            following: str | None = cursor.key().decode("latin-1")
            found = cursor.prev()
        else:
            following, found = None, cursor.last()
        text = at.decode("latin-1")
        if not found or following == text:
            raise self.damaged(f"the index does not find {text} where it lists it")
        previous_key = cursor.key()
        previous = self._decode("index", previous_key, cursor.value())
        if previous["n"] != following:
            raise self.damaged(
                f"the index entry {previous_key.decode('latin-1')} names {previous['n']} as the next "
                f"entry but the next is {following}: entries were lost"
            )
        return previous_key, previous, following

    # -- chains ---------------------------------------------------------------------------
    def _entry(self, chain: tuple[str, ...], position: int) -> dict[str, Any]:
        body = self._read(self._entries, "entries", _chain_prefix(chain) + _POSITION.pack(position))
        if body is None:
            raise self.damaged(f"entry {position} of the chain {list(chain)} is missing")
        return body

    def _put_entry(self, chain: tuple[str, ...], position: int, body: dict[str, Any]) -> None:
        self._write(self._entries, _chain_prefix(chain) + _POSITION.pack(position), body)

    def item(self, chain: tuple[str, ...], position: int) -> Any:
        """The item at ``position`` of ``chain``, which must be there."""
        return self._entry(chain, position)["i"]

    def append(self, chain: tuple[str, ...], position: int, item: Any) -> None:
        """Add ``item`` as the newest of ``chain`` (``position`` must be higher than any there)."""
        head_key = key("chain", *chain)
        head = self.get(head_key) or {"newest": 0, "oldest": 0, "count": 0}
        if head["newest"]:
            newest = self._entry(chain, head["newest"])
            newest["n"] = position
            self._put_entry(chain, head["newest"], newest)
        else:
            head["oldest"] = position
        self._put_entry(chain, position, {"p": head["newest"], "n": 0, "i": item})
        head["newest"], head["count"] = position, head["count"] + 1
        self.put(head_key, head)

    def remove(self, chain: tuple[str, ...], position: int) -> None:
        """Take the item at ``position`` out of ``chain``."""
        head_key = key("chain", *chain)
        head = self.required(head_key, f"the head of the chain {list(chain)}")
        entry = self._entry(chain, position)
        for side, other_side, end in (("p", "n", "oldest"), ("n", "p", "newest")):
            if entry[side]:
                neighbour = self._entry(chain, entry[side])
                neighbour[other_side] = entry[other_side]
                self._put_entry(chain, entry[side], neighbour)
            else:
                head[end] = entry[other_side]
        self.txn.delete(_chain_prefix(chain) + _POSITION.pack(position), db=self._entries)
        head["count"] -= 1
        self.put(head_key, head)

    def walk(self, chain: tuple[str, ...], limit: int | None, before: int | None = None) -> list[tuple[int, Any]]:
        """Up to ``limit`` (position, item) of ``chain``, newest first, after position ``before``.

        :raises MissingEntry: if ``before`` is not a position of the chain.
        """
        head = self.get(key("chain", *chain))
        if before is None:
            if head is None:
                return []
            position, following = head["newest"], 0
        else:
            start = self._read(self._entries, "entries", _chain_prefix(chain) + _POSITION.pack(before))
            if start is None:
                raise MissingEntry(before)
            if head is None:
                raise self.damaged(f"the chain {list(chain)} has entries but no head")
            position, following = start["p"], before
        found: list[tuple[int, Any]] = []
        while position and (limit is None or len(found) < limit):
            entry = self._entry(chain, position)
            if entry["n"] != following or len(found) >= head["count"]:
                raise self.damaged(f"the chain {list(chain)} is broken at entry {position}")
            found.append((position, entry["i"]))
            following, position = position, entry["p"]
        if not position and (head["oldest"] != following or (before is None and len(found) != head["count"])):
            raise self.damaged(f"the chain {list(chain)} does not hold the {head['count']} entries its head counts")
        return found


def check_format(tables: Tables) -> None:
    """Raise :class:`StoreError` unless the store was written in :data:`FORMAT`."""
    found = tables.stored_format()
    if found != FORMAT:
        msg = (
            f"the LMDB op store at {tables.where!r} has layout version {found}, this chariots "
            f"reads version {FORMAT}; open it with the chariots release that wrote it"
        )
        raise StoreError(msg)
