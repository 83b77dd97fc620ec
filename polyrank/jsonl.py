"""Reading JSONL inputs with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def read_jsonl(path: Path, parse: Callable[[dict], T], expected: str) -> Iterator[tuple[int, T]]:
    """Yields (line number, parse(record)) for every non-blank line; a line that is not JSON
    or that `parse` cannot read raises ValueError naming `path:line` and what was expected."""
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield number, parse(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: expected {expected}: {error}") from None
