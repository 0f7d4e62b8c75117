"""Decode repository files to text, with line numbers in errors and encoding detection."""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes

from .base import TransformError

# Short Western European text decodes equally well in many single-byte code
# pages, and charset-normalizer 3.5 then often ranks one such as cp1250 or
# cp1006 first, which turns "café" into "cafﻠ". Windows-1252 is what
# spreadsheet programs on Western European systems write, so it wins
# whenever the detector lists it as a plausible candidate.
PREFERRED_LEGACY_ENCODING = "cp1252"


def decode_utf8(path: str, data: bytes) -> str:
    """Decode UTF-8 with or without a byte order mark. The error names the line of the first invalid byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TransformError(path, "is not valid UTF-8; save the file as UTF-8", _line_of(data, error.start)) from error


def decode_as(path: str, data: bytes, encoding: str) -> str:
    """Decode data in the encoding named by option encoding, dropping a UTF-8 byte order mark."""
    try:
        codec_name = codecs.lookup(encoding).name
    except LookupError as error:
        raise TransformError(
            path, f"option encoding: unknown encoding {encoding!r}; use a Python codec name such as utf-8 or cp1252"
        ) from error
    if codec_name == "utf-8":
        codec_name = "utf-8-sig"

    try:
        return data.decode(codec_name)
    except LookupError as error:
        # Codecs such as base64 or rot13 exist but do not turn bytes into text.
        raise TransformError(path, f"option encoding: {encoding!r} is not a text encoding; use one such as utf-8 or cp1252") from error
    except UnicodeDecodeError as error:
        raise TransformError(
            path,
            f"is not valid {encoding} (byte 0x{data[error.start]:02x}); set option encoding to the file's encoding",
            _line_of(data, error.start),
        ) from error


def decode_detected(path: str, data: bytes) -> str:
    """Decode data as UTF-8 when it is valid UTF-8, else in the encoding that charset-normalizer detects."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        first_bad_line = _line_of(data, error.start)

    results = from_bytes(data)
    candidates = {name for match in results for name in match.could_be_from_charset}
    best = results.best()
    if PREFERRED_LEGACY_ENCODING in candidates and _decodes(data, PREFERRED_LEGACY_ENCODING):
        encoding = PREFERRED_LEGACY_ENCODING
    elif best is not None:
        encoding = best.encoding
    else:
        raise TransformError(
            path,
            "is not valid UTF-8 and its encoding could not be detected; "
            "save the file as UTF-8 or set option encoding to its encoding, such as cp1252",
            first_bad_line,
        )
    return decode_as(path, data, encoding)


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _line_of(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1
