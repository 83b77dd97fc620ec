"""What a valid query or product text is: the one rule the client and the server's models
share. Standard library only, so a client installed without tokenizers or torch applies
exactly what the server will."""

from __future__ import annotations

from typing import Optional

# Longest text accepted (UTF-8 bytes): far beyond any product title or description that
# fits max_length tokens, small enough that one request cannot tie up the tokenizer.
MAX_TEXT_BYTES = 65536


def text_problem(text: str, encoded_bytes: int) -> Optional[str]:
    """What is wrong with one query or product text, or None: the one rule the client and
    the server's models share."""
    if encoded_bytes > MAX_TEXT_BYTES:
        return f"is {encoded_bytes} bytes, more than the {MAX_TEXT_BYTES} allowed"
    if "\x00" in text:
        return "contains a NUL character"
    if not text.strip():
        return "is empty or only whitespace"
    return None


def decode_text(name: str, row: int, value) -> str:
    """One element of a BYTES input tensor as text; ValueError naming `name[row]` if it is not
    valid UTF-8 or breaks `text_problem`."""
    if not isinstance(value, bytes):
        raise ValueError(f"{name}[{row}] must be UTF-8 bytes, got {type(value).__name__}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{name}[{row}] is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    problem = text_problem(text, len(value))
    if problem:
        raise ValueError(f"{name}[{row}] {problem}")
    return text
