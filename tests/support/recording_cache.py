"""A SimpleCache that records what is asked of it from outside (not the
calls its own methods make): for counting a store's cache operations.
"""

from __future__ import annotations

import typing as t

from cachelib import SimpleCache


class RecordingCache(SimpleCache):
    """Records each outside call as its name, keys and timeout; copies of
    the object (the store's own) record into the same list.
    """

    def __init__(self) -> None:
        super().__init__(threshold=100_000)
        self.calls: list[tuple[str, list[str], int | None]] = []
        self._depth = [0]

    @property
    def names(self) -> list[str]:
        """The names of the calls recorded, in order."""
        return [name for name, _, _ in self.calls]

    def _recorded(name: str) -> t.Any:  # type: ignore[misc]
        def method(self: RecordingCache, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if not self._depth[0]:
                keys = list(args[0]) if name == "set_many" else [args[0]]
                self.calls.append((name, keys, kwargs.get("timeout")))

            self._depth[0] += 1

            try:
                return getattr(SimpleCache, name)(self, *args, **kwargs)
            finally:
                self._depth[0] -= 1

        return method

    get = _recorded("get")
    get_many = _recorded("get_many")
    set = _recorded("set")
    set_many = _recorded("set_many")
    add = _recorded("add")
    delete = _recorded("delete")
    delete_many = _recorded("delete_many")
    has = _recorded("has")
    del _recorded
