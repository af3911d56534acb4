"""Resource JSON as the cache keeps it: a zstd frame against a dictionary shipped with the app.

Why: a resource is about a kilobyte of JSON, and at 1,000,000 patients the cache held 14 GB of
it. Compressed one resource at a time against a dictionary of what FHIR resources share
(element names, code systems, NHS identifier systems) it is 5 to 6 times smaller, each row
still read and written alone (a record view reads a person's rows, not a block), and a bulk
load writes a sixth of the bytes (the writer, not the parse, is a load's bottleneck; the
compression runs in the load's worker process). Lossless: `unpack` gives back the bytes as
received.

Rows written before (plain JSON, which starts with `{`) are read as they are, so no migration
rewrites the cache; they are packed when next written. A frame names its dictionary (zstd's
dictionary id): a frame whose dictionary this build does not ship (a cache written by a newer
release) is refused with a clear error, never read as garbage. Dictionaries are never changed
once released (packaging/dictionary/make_dictionary.py): a better one gets the next id.

Compression before encryption leaks nothing here: what an attacker could see is the encrypted
page, and no one outside chooses what is compressed beside a secret and watches the size.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from typing import Any

import orjson
import zstandard

from app.errors import SchemaTooNew, StoreUnavailable

WRITE_DICTIONARY = 1  # the id new rows are packed with: the newest shipped
_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame (RFC 8878 section 3.1.1)
_LEVEL = 1  # 5.8x at 335 MB/s; level 3 gains 5% for half the speed


@cache
def _dictionary_bytes(dict_id: int) -> bytes:
    try:
        data = (resources.files("app") / "resources" / f"fhir-r4-{dict_id}.zdict").read_bytes()
    except FileNotFoundError:
        raise SchemaTooNew(
            "the cache holds records packed by a newer release of Kerbside; update the app"
        ) from None
    if zstandard.ZstdCompressionDict(data).dict_id() != dict_id:
        raise StoreUnavailable(f"the app's compression dictionary {dict_id} is damaged")
    return data


def _dictionary(dict_id: int) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(
        _dictionary_bytes(dict_id), dict_type=zstandard.DICT_TYPE_FULLDICT
    )


class _PerThread(threading.local):
    """Nothing of zstandard's is shared between threads: a dictionary object digests itself
    lazily on first use (two threads doing so at once crash the process), and contexts are
    single-threaded. Each thread (the GUI's, sync's, a bulk load's) builds its own, once."""

    def __init__(self) -> None:
        self.packer: zstandard.ZstdCompressor | None = None
        self.unpackers: dict[int, zstandard.ZstdDecompressor] = {}


_local = _PerThread()


def pack(raw: bytes) -> bytes:
    """`raw` JSON as a zstd frame against the newest dictionary."""
    packer = _local.packer
    if packer is None:
        dictionary = _dictionary(WRITE_DICTIONARY)
        dictionary.precompute_compress(level=_LEVEL)
        packer = _local.packer = zstandard.ZstdCompressor(
            level=_LEVEL,
            dict_data=dictionary,
            write_checksum=False,  # SQLCipher's HMAC already checks every page
            write_content_size=True,
            write_dict_id=True,
        )
    return packer.compress(raw)


def unpack(blob: bytes) -> bytes:
    """The JSON bytes of a stored row: a frame unpacked, a plain row (written before packing)
    as it is."""
    if not blob.startswith(_MAGIC):
        return blob
    try:
        dict_id = zstandard.get_frame_parameters(blob).dict_id
    except zstandard.ZstdError:
        raise StoreUnavailable("a cached record could not be read") from None
    unpacker = _local.unpackers.get(dict_id)
    if unpacker is None:
        unpacker = _local.unpackers[dict_id] = zstandard.ZstdDecompressor(
            dict_data=_dictionary(dict_id)
        )
    try:
        return unpacker.decompress(blob)
    except zstandard.ZstdError:
        raise StoreUnavailable("a cached record could not be read") from None


def loads(blob: bytes) -> Any:
    """The resource of a stored row."""
    return orjson.loads(unpack(blob))
