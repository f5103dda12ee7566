"""`concord decode PLATFORM [FILE]`: run a payload through its codec and print canonical events."""

from __future__ import annotations

import sys
from typing import IO, TextIO

import msgspec

from concord.codecs.config import CodecConfig
from concord.codecs.errors import DecodeError, as_decode_error
from concord.codecs.registry import decoder


def documents(data: bytes) -> list[tuple[int, bytes]]:
    """The input as documents with their line numbers: one JSON document, or JSON Lines."""
    stripped = data.strip()
    if not stripped:
        return []
    try:
        msgspec.json.decode(stripped)
        return [(1, stripped)]
    except msgspec.DecodeError:
        pass
    except RecursionError:
        return [(1, stripped)]  # too deep to read here: one document, which its codec refuses by name
    return [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]


def run(platform: str, source: IO[bytes], out: TextIO, err: TextIO, config: CodecConfig) -> int:
    """Decode every document; 0 when all decoded (even to nothing), 1 at the first bad one."""
    decode = decoder(platform)
    encoder = msgspec.json.Encoder()
    docs = documents(source.read())
    for line, doc in docs:
        try:
            events = decode(doc, config)
        except Exception as exc:  # a codec raises only DecodeError; anything else is still said in one line
            error = exc if isinstance(exc, DecodeError) else as_decode_error(exc, "payload")
            where = f"line {line}: " if len(docs) > 1 else ""
            err.write(f"concord decode: {where}{error.reason}: {error.detail}\n")
            return 1
        for event in events:
            out.write(encoder.encode(event).decode() + "\n")
    return 0


def main(platform: str, path: str | None, config: CodecConfig) -> int:
    try:
        if path is None or path == "-":
            return run(platform, sys.stdin.buffer, sys.stdout, sys.stderr, config)
        with open(path, "rb") as source:
            return run(platform, source, sys.stdout, sys.stderr, config)
    except OSError as exc:
        sys.stderr.write(f"concord decode: cannot read {path}: {exc.strerror}\n")
        return 1
    except MemoryError:
        sys.stderr.write("concord decode: too_large: the input does not fit in memory\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"concord decode: {exc}\n")
        return 2
