"""``framing.encoding``: every content-encoding mitmproxy speaks, decoded incrementally and
strictly, with whatever zstd module the installed mitmproxy brings (``zstandard`` up to 12.2,
``backports.zstd`` from 12.3, ``compression.zstd`` on Python 3.14)."""

from __future__ import annotations

import pytest
from mitmproxy.net import encoding
from streamshim.framing.encoding import StreamDecoder, decode_body

BODY = b'data: {"choices":[{"index":0,"delta":{"content":"tok "}}]}\n\n' * 500
ENCODINGS = ("gzip", "deflate", "br", "zstd")


@pytest.mark.parametrize("name", ENCODINGS)
def test_decoded_whole_and_in_small_pieces(name: str) -> None:
    packed = encoding.encode(BODY, name)
    assert decode_body(packed, name) == BODY
    dec = StreamDecoder(name)
    out = b"".join(dec.feed(packed[i : i + 7]) for i in range(0, len(packed), 7))
    assert out + dec.close() == BODY


@pytest.mark.parametrize("name", ENCODINGS)
def test_a_cut_body_is_an_error_not_a_shorter_body(name: str) -> None:
    packed = encoding.encode(BODY, name)
    with pytest.raises(ValueError, match=f"^{name} data cut short"):
        decode_body(packed[: len(packed) // 2], name)


@pytest.mark.parametrize("name", ENCODINGS)
def test_garbage_is_an_error_naming_the_encoding(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        decode_body(b"\xff" * 64, name)


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown content-encoding 'x-unknown'"):
        StreamDecoder("x-unknown")
