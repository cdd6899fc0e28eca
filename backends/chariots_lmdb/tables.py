"""The on-disk structures of the LMDB op store: checksummed values, a verified index, chains.

An environment of the store has two named sub-databases, ``index`` and ``entries``.

**Values.** Every value starts with ``crc32(key + rest of the value)`` (4 bytes, big-endian); index
values continue with a JSON body. A flipped byte in a value, or a value found under another key than the one it was
written under (a flipped byte in a key), fails the check and is reported as damage.

**The index** maps keys made by :func:`key` (JSON arrays of names, e.g. ``["version", "pca",
"<major>_<minor>_<patch>"]``) to ``{"n": <the next key of the index>, "v": <payload>}``: from a
sentinel entry (key ``\\x00``, which sorts first) every entry names the one after it. A key that
is not found is therefore *proven* absent (the entry before where it would sit names the entry
after it) and an entry lost to a damaged page is reported, never taken for one never written.

**Chains** are lists read newest first: a head in the index (``key("chain", *chain)`` ->
``{"newest", "oldest", "count"}``) and one entry per item in ``entries`` under the chain's
prefix and the item's position (8 bytes, big-endian). An entry's value is its checksum, the
previous and the next position (8 bytes each, big-endian; 0: none) and the item's JSON. A page
is read by walking "previous" from the head, or from the entry of the ``before`` position:
each entry must name the one it was reached from, the walk must end at ``oldest``, and a walk
over the whole chain must count ``count`` entries, so no damage can make a page skip or lose
an item silently. Removing an item relinks its neighbours.

Reading an entry is one B-tree lookup, whatever the length of the chain; the items of a page
are parsed by one ``json.loads`` (whose fixed cost per call is most of a small record's).
"""

from __future__ import annotations

import functools
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
_LINKS = struct.Struct(">QQ")  # an entry's previous and next positions
_ENTRY_HEADER = _CRC.size + _LINKS.size
_SENTINEL = b"\x00"
_FORMAT_KEY = b'["meta","format"]'
_HEAD_KEY = b'["meta","head"]'
_LONGEST_NAME = 160  # bytes: longer names are replaced by their sha256, so keys stay < 511 bytes


def _short(name: str) -> str:
    if len(name.encode()) <= _LONGEST_NAME:
        return name
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@functools.lru_cache(maxsize=65536)  # keys repeat: a listing reads its chain's prefix per entry
def key(*parts: str) -> bytes:
    """The index key of ``parts`` (long names shortened); JSON, so no key is a prefix of another's parts."""
    return json.dumps([_short(str(part)) for part in parts], separators=(",", ":")).encode()


@functools.lru_cache(maxsize=4096)
def _chain_prefix(chain: tuple[str, ...]) -> bytes:
    return key(*chain)[:-1] + b","


def _intact(at: bytes, value: bytes) -> bool:
    """Whether ``value`` is what was written under ``at``."""
    return len(value) >= _CRC.size and _CRC.unpack_from(value)[0] == zlib.crc32(memoryview(value)[_CRC.size :], zlib.crc32(at))


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
        if not _intact(at, value):
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

    def scan(self, *parts: str) -> list[tuple[list[str], Any]]:
        """Every ``(key parts, payload)`` of the index whose key starts with ``parts``, in key
        order, checked against the index's links: an entry lost to damage is reported, never
        skipped (garbage collection must not take a lost record for a missing one)."""
        prefix = key(*parts)[:-1] + b","
        cursor = self.txn.cursor(db=self._index)
        # The entry before the range names its first key (the sentinel sorts before every key).
        if not (cursor.prev() if cursor.set_range(prefix) else cursor.last()):
            raise self.damaged("the index has lost its first entry")
        expected = self._decode("index", cursor.key(), cursor.value())["n"]
        found = []
        positioned = cursor.set_range(prefix)
        while positioned and cursor.key().startswith(prefix):
            at = bytes(cursor.key())
            if at.decode("latin-1") != expected:
                raise self.damaged(f"the index lists {expected} before {at.decode('latin-1')}: entries were lost")
            body = self._decode("index", at, cursor.value())
            found.append((json.loads(at), body["v"]))
            expected = body["n"]
            positioned = cursor.next()
        following = cursor.key().decode("latin-1") if positioned else None
        if expected != following:
            raise self.damaged(f"the index names {expected} as the next entry, but it is {following}: entries were lost")
        return found

    # -- chains ---------------------------------------------------------------------------
    def _entry(self, chain: tuple[str, ...], position: int, required: bool = True) -> tuple[int, int, bytes] | None:
        """(previous, next, item JSON) of the entry at ``position``."""
        at = _chain_prefix(chain) + _POSITION.pack(position)
        value = self.txn.get(at, db=self._entries)
        if value is None:
            if required:
                raise self.damaged(f"entry {position} of the chain {list(chain)} is missing")
            return None
        if not _intact(at, value):
            raise self.damaged(f"entry {position} of the chain {list(chain)} fails its checksum")
        previous, following = _LINKS.unpack_from(value, _CRC.size)
        return previous, following, value[_ENTRY_HEADER:]

    def _put_entry(self, chain: tuple[str, ...], position: int, previous: int, following: int, item: bytes) -> None:
        at = _chain_prefix(chain) + _POSITION.pack(position)
        rest = _LINKS.pack(previous, following) + item
        self.txn.put(at, _CRC.pack(zlib.crc32(rest, zlib.crc32(at))) + rest, db=self._entries)

    def items(self, chain: tuple[str, ...], positions: list[int]) -> list[Any]:
        """The items at ``positions`` of ``chain``, which must be there."""
        return self.parse([self._entry(chain, position)[2] for position in positions])  # type: ignore[index]

    def parse(self, items: list[bytes]) -> list[Any]:
        """The items of a walk, parsed: one ``json.loads`` for all of them."""
        if not items:
            return []
        try:
            return json.loads(b"[" + b",".join(items) + b"]")
        except ValueError as exc:  # a checksum collision: as damaged as a failed checksum
            raise self.damaged("an entry of a chain is not JSON") from exc

    def append(self, chain: tuple[str, ...], position: int, item: Any) -> None:
        """Add ``item`` as the newest of ``chain`` (``position`` must be higher than any there)."""
        head_key = key("chain", *chain)
        head = self.get(head_key) or {"newest": 0, "oldest": 0, "count": 0}
        if head["newest"]:
            previous, _, newest = self._entry(chain, head["newest"])  # type: ignore[misc]
            self._put_entry(chain, head["newest"], previous, position, newest)
        else:
            head["oldest"] = position
        self._put_entry(chain, position, head["newest"], 0, json.dumps(item, separators=(",", ":")).encode())
        head["newest"], head["count"] = position, head["count"] + 1
        self.put(head_key, head)

    def remove(self, chain: tuple[str, ...], position: int) -> None:
        """Take the item at ``position`` out of ``chain``."""
        head_key = key("chain", *chain)
        head = self.required(head_key, f"the head of the chain {list(chain)}")
        previous, following, _ = self._entry(chain, position)  # type: ignore[misc]
        if previous:
            before_it, _, item = self._entry(chain, previous)  # type: ignore[misc]
            self._put_entry(chain, previous, before_it, following, item)
        else:
            head["oldest"] = following
        if following:
            _, after_it, item = self._entry(chain, following)  # type: ignore[misc]
            self._put_entry(chain, following, previous, after_it, item)
        else:
            head["newest"] = previous
        self.txn.delete(_chain_prefix(chain) + _POSITION.pack(position), db=self._entries)
        head["count"] -= 1
        self.put(head_key, head)

    def walk(self, chain: tuple[str, ...], limit: int | None, before: int | None = None) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (position, item JSON) of ``chain``, newest first, after position ``before``.

        Parse the items with :meth:`parse`.

        :raises MissingEntry: if ``before`` is not a position of the chain.
        """
        head = self.get(key("chain", *chain))
        if before is None:
            if head is None:
                return []
            position, following = head["newest"], 0
        else:
            start = self._entry(chain, before, required=False)
            if start is None:
                raise MissingEntry(before)
            if head is None:
                raise self.damaged(f"the chain {list(chain)} has entries but no head")
            position, following = start[0], before
        found: list[tuple[int, bytes]] = []
        # The hot loop of every listing: one lookup and one checksum per entry, no parsing.
        prefix, pack, get, entries = _chain_prefix(chain), _POSITION.pack, self.txn.get, self._entries
        while position and (limit is None or len(found) < limit):
            at = prefix + pack(position)
            value = get(at, db=entries)
            if value is None:
                raise self.damaged(f"entry {position} of the chain {list(chain)} is missing")
            if not _intact(at, value):
                raise self.damaged(f"entry {position} of the chain {list(chain)} fails its checksum")
            previous, next_one = _LINKS.unpack_from(value, _CRC.size)
            if next_one != following or len(found) >= head["count"]:
                raise self.damaged(f"the chain {list(chain)} is broken at entry {position}")
            found.append((position, value[_ENTRY_HEADER:]))
            following, position = position, previous
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
