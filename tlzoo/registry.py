"""A generic name -> object registry with glob listing and "did you mean" errors."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, Iterator, TypeVar

from tlzoo.errors import ConfigError, NotFoundError

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds named entries of one kind (backbones, plugins).

    ``kind`` is used in messages only ("backbone", "plugin").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        if not name or name != name.strip():
            raise ConfigError(f"invalid {self.kind} name {name!r}")
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ConfigError(
                f"{self.kind} {name!r} is already registered; pass replace=True to override it"
            )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise NotFoundError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}{hint} "
            f"(list them with `tlzoo {self.kind}s`)"
        )

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, filtered by a shell-style glob such as ``"efficientnet*"``."""
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
