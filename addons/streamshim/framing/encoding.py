"""``content-encoding`` of a body (gzip, x-gzip, deflate with or without its zlib header, br,
zstd): incremental and strict. Knows no API."""

from __future__ import annotations

import zlib
from typing import Any

__all__ = ["StreamDecoder", "decode_body"]


class StreamDecoder:
    """Incremental, strict ``content-encoding`` decoder: ``feed`` bytes, then ``close()``, which
    raises ``ValueError`` when the compressed stream is cut short or corrupt."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding = encoding.strip().lower()
        self._zlib: Any = None
        self._other: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding == "br":
            import brotli  # a mitmproxy dependency

            self._other = brotli.Decompressor()
        elif encoding == "zstd":
            self._other = _zstd_decompressor()
        elif encoding not in ("", "identity"):
            raise ValueError(f"unknown content-encoding {encoding!r}")
        self._started = False

    def feed(self, data: bytes) -> bytes:
        try:
            if self._zlib is not None:
                if not self._started and self.encoding == "deflate":
                    self._started = True
                    try:
                        return bytes(self._zlib.decompress(data))
                    except zlib.error:  # "deflate" sent without its zlib header
                        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return bytes(self._zlib.decompress(data))
            if self._other is not None:
                process = getattr(self._other, "process", None) or self._other.decompress
                return bytes(process(data))
        except Exception as exc:
            raise ValueError(f"corrupt {self.encoding} data: {exc}") from None
        return data

    def close(self) -> bytes:
        if self._zlib is not None:
            out = bytes(self._zlib.flush())
            if not self._zlib.eof:
                raise ValueError(f"{self.encoding} data cut short (no end-of-stream marker)")
            if self._zlib.unused_data.strip(b"\0"):
                raise ValueError(
                    f"{len(self._zlib.unused_data)} bytes of garbage after the {self.encoding} data"
                )
            return out
        if self._other is not None:
            finished = getattr(self._other, "is_finished", None)  # brotli
            if not (finished() if finished is not None else getattr(self._other, "eof", True)):  # zstd
                raise ValueError(f"{self.encoding} data cut short")
        return b""


def _zstd_decompressor() -> Any:
    """An incremental zstd decompressor from what mitmproxy brings: ``compression.zstd``
    (Python 3.14) or ``backports.zstd`` (mitmproxy ≥ 12.3), ``zstandard`` (mitmproxy ≤ 12.2)."""
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        except ImportError:
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj()
    return zstd.ZstdDecompressor()


def decode_body(raw: bytes, encoding: str) -> bytes:
    """A whole body, strictly decoded (``ValueError`` names what is wrong)."""
    dec = StreamDecoder(encoding)
    return dec.feed(raw) + dec.close()
