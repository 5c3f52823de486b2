"""A record's index keys read straight from its bytes, for the index builder.

The reput service reads a record into a `DispatchRequest` (`dispatch.scan_record`): every header
field, the topic and the properties as strings, the tag code. The index needs four things of a
record: its store time, its sys flag (rolled-back halves are not indexed), its topic and two
properties, and those only to hash them. Reading just those as bytes cost 0.9 us a 1 KiB record
against 2.4 us for `scan_record` (measured on the 2-core development VM), and the builder reads
every record the broker stores.

Where things are in a record (see `protocol/record.py` for the whole layout):

    offset             size  field
         0                4  total_size
         4                4  magic (MESSAGE_MAGIC_V1 or _V2; anything else: scan_record judges)
        36                4  sys_flag: bits 0x10 / 0x20 say the born / store host is IPv6
        48          8 or 20  born host (IP, port)
         .                8  store_timestamp
         .          8 or 20  store host
         .           4 + 8  reconsume_times, prepared_transaction_offset
         .                4  body_length, then the body
         .  1 (V1) or 2 (V2) topic_length, then the topic
         .                2  properties_length, then the properties

The hashes are those `IndexService.dispatch` computes from the strings: CRC-32 of `topic#key`
in UTF-8, masked to 31 bits (`index_file.key_hash`).
"""

from __future__ import annotations

import mmap
import struct

from zlib_ng.zlib_ng import crc32

from rmqkit.common.properties import KEY_SEPARATOR, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, Prop
from rmqkit.protocol.codes import (
    HOST_V6_MASK,
    MESSAGE_MAGIC_V1,
    MESSAGE_MAGIC_V2,
    TRANSACTION_TYPE_MASK,
    SysFlag,
)
from rmqkit.protocol.record import MIN_RECORD_BYTES, SHORT, SYS_FLAG_AT
from rmqkit.server.store.index_file import HASH_MASK, Entry

_UNIQ_AT = (Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX + NAME_VALUE_SEPARATOR).encode()
_KEYS_AT = (Prop.KEYS + NAME_VALUE_SEPARATOR).encode()
_SEP = PROPERTY_SEPARATOR.encode()
_SEP_BYTE = _SEP[0]
_KEY_SEP = KEY_SEPARATOR.encode()
_UNIQ_LEN, _KEYS_LEN = len(_UNIQ_AT), len(_KEYS_AT)
_ROLLBACK = int(SysFlag.TRANSACTION_ROLLBACK)
_PREFIX = struct.Struct(f">iI{SYS_FLAG_AT - 8}xi")
"""total_size, magic, sys_flag."""
_BORN_AT = 48


def _layout(bits: int) -> tuple[int, struct.Struct, int]:
    """Where the store timestamp is, the struct that reads it and the body length from there,
    and where the body starts, for the host bits `(sys_flag & HOST_V6_MASK) >> 4`."""
    born = 20 if bits & 1 else 8
    store = 20 if bits & 2 else 8
    ts_at = _BORN_AT + born
    return ts_at, struct.Struct(f">q{store}x4x8xi"), ts_at + 8 + store + 4 + 8 + 4


_LAYOUTS = tuple(_layout(bits) for bits in range(4))


def _value(props: bytes, name_at: bytes) -> bytes:
    """The value of the property `name_at` names (b"" when absent): a match counts at the start
    or after a separator only, else it is the end of another name."""
    i = props.find(name_at)
    while i > 0 and props[i - 1] != _SEP_BYTE:
        i = props.find(name_at, i + 1)
    if i < 0:
        return b""
    i += len(name_at)
    j = props.find(_SEP, i)
    return props[i:j] if j >= 0 else props[i:]


READ = 0
"""`KeyReader.read` stopped at `stop` or after `limit` records."""
PARTIAL = 1
"""It stopped at a record that goes on past `stop` (announced in part)."""
OTHER = 2
"""It stopped at something other than a message record: `scan_record` says what."""


class KeyReader:
    """Reads the index entries of a segment's records."""

    def __init__(self) -> None:
        self._seeds: dict[bytes, int] = {}
        """The CRC of `topic#` by topic: a key's hash carries it on over the key."""

    def read(
        self,
        view: mmap.mmap | bytes,
        pos: int,
        stop: int,
        limit: int,
        base: int,
        entries: list[Entry],
        skip_below: int,
    ) -> tuple[int, int, int]:
        """Append the entries of the records from `pos` (a record boundary) to `entries`.

        `view` is a segment (its mapping: slices of it are bytes) starting at CommitLog
        offset `base`; reading ends at `stop` or
        after `limit` records. Records before `skip_below` (CommitLog offset) and rolled-back
        halves add nothing. Returns where it stopped, how many records it read, and why
        (`READ`, `PARTIAL`, `OTHER`).
        """
        end_of_view = len(view)
        add = entries.append
        seeds = self._seeds
        n = 0
        why = READ
        while pos < stop and n < limit:
            if end_of_view - pos < MIN_RECORD_BYTES:
                why = OTHER
                break
            size, magic, flag = _PREFIX.unpack_from(view, pos)
            if (
                (magic != MESSAGE_MAGIC_V1 and magic != MESSAGE_MAGIC_V2)
                or size < MIN_RECORD_BYTES
                or size > end_of_view - pos
            ):
                why = OTHER
                break
            if pos + size > stop:
                why = PARTIAL
                break
            ts_at, tail, head = _LAYOUTS[(flag & HOST_V6_MASK) >> 4]
            ts, blen = tail.unpack_from(view, pos + ts_at)
            record_at = pos
            pos += size
            n += 1
            phy = base + record_at
            if phy < skip_below or flag & TRANSACTION_TYPE_MASK == _ROLLBACK:
                continue
            p = record_at + head + blen
            if magic == MESSAGE_MAGIC_V1:
                tlen = view[p]
                p += 1
            else:
                (tlen,) = SHORT.unpack_from(view, p)
                p += 2
            props = view[p + tlen + 2 : pos]
            # `_value` written out for where the name is found at once (nearly always).
            i = props.find(_UNIQ_AT)
            if i < 0:
                uniq = b""
            elif i == 0 or props[i - 1] == _SEP_BYTE:
                i += _UNIQ_LEN
                j = props.find(_SEP, i)
                uniq = props[i:j] if j >= 0 else props[i:]
            else:
                uniq = _value(props, _UNIQ_AT)
            i = props.find(_KEYS_AT)
            if i < 0:
                keys = b""
            elif i == 0 or props[i - 1] == _SEP_BYTE:
                i += _KEYS_LEN
                j = props.find(_SEP, i)
                keys = props[i:j] if j >= 0 else props[i:]
            else:
                keys = _value(props, _KEYS_AT)
            if not (uniq or keys):
                continue
            topic = view[p : p + tlen]
            seed = seeds.get(topic)
            if seed is None:
                seed = crc32(topic + b"#")
                if len(seeds) < 100_000:
                    seeds[topic] = seed
            if uniq:
                add((crc32(uniq, seed) & HASH_MASK, phy, ts))
            if keys:
                for k in keys.split(_KEY_SEP):
                    if k:
                        add((crc32(k, seed) & HASH_MASK, phy, ts))
        return pos, n, why
