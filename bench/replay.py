"""One host's engine replayed alone: its CPU per round without the simulated LAN's other hosts.

In the simulated LAN every host's engine runs in one process. With more members, each host's
calls come between more of the others' and find colder caches, so its time per round grows
although its work does not (its Python calls per round stay the same). Recording every call one
engine gets, and the random bytes it draws, and replaying them into a fresh engine built the same
way times that host as it would run on a machine of its own.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lanon.common import crypto
from lanon.lab import sim

# A daemon asks these once after each input it hands its engine; the simulated LAN asks every
# host after every step, more often the more hosts there are. Only the first after an input counts.
QUERIES = frozenset({"get_timer", "pop_commands", "pop_events"})

Call = tuple[str, tuple[Any, ...], dict[str, Any], int | None]  # name, args, kwargs, len(result)


class Recording:
    """Every outermost call made to the engine of host `name` (of class `cls`) in a simulated LAN
    built inside `record()`."""

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name
        self.args: tuple[tuple[Any, ...], dict[str, Any], Any] | None = None
        self.calls: list[Call] = []
        self.seeds: list[bytes] = []  # ephemeral seeds the engine drew, in order
        self._depth = 0

    @contextmanager
    def record(self) -> Iterator[None]:
        rec = self
        original = self.cls

        class Recorded(original):  # type: ignore[misc, valid-type]
            def __init__(self, *a: Any, **kw: Any) -> None:
                if (a[1] if len(a) > 1 else kw.get("name")) != rec.name:
                    super().__init__(*a, **kw)
                    return
                rec.args = (a, dict(kw), kw["rng"].getstate())
                rec._depth += 1
                try:
                    super().__init__(*a, **kw)
                finally:
                    rec._depth -= 1
                for attr in dir(original):
                    if not attr.startswith("_") and callable(getattr(original, attr)):
                        setattr(self, attr, rec._recorder(attr, getattr(self, attr)))

        drawn = crypto._ephemeral_seed

        def seed() -> bytes:
            value = drawn()
            if rec._depth:
                rec.seeds.append(value)
            return value

        names = vars(sim)
        names[original.__name__] = Recorded
        vars(crypto)["_ephemeral_seed"] = seed
        try:
            yield
        finally:
            names[original.__name__] = original
            vars(crypto)["_ephemeral_seed"] = drawn

    def _recorder(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*a: Any, **kw: Any) -> Any:
            outermost = self._depth == 0
            self._depth += 1
            try:
                result = fn(*a, **kw)
            finally:
                self._depth -= 1
            if outermost:
                size = len(result) if isinstance(result, list) else None
                self.calls.append((name, a, kw, size))
            return result

        return recorded

    def mark(self) -> int:
        return len(self.calls)

    def replay(self, start: int, end: int) -> tuple[float, bool]:
        """Seconds a fresh engine spends on calls[start:end] after the calls before them, and
        whether it answered every call as the recorded one did (results' lengths)."""
        assert self.args is not None, f"no engine named {self.name} was built while recording"
        a, kw, state = self.args
        rng = random.Random()
        rng.setstate(state)
        seeds = iter(self.seeds)
        drawn = crypto._ephemeral_seed
        vars(crypto)["_ephemeral_seed"] = lambda: next(seeds)
        spent, same = 0.0, True
        # The simulated LAN's objects (every host's, the recording's) would be the garbage
        # collector's to walk at every collection: freeze them, as if this host ran alone.
        gc.collect()
        gc.freeze()
        try:
            engine = self.cls(*a, **{**kw, "rng": rng})
            asked: set[str] = set()
            for i, (name, ca, ckw, size) in enumerate(self.calls[:end]):
                fn = getattr(engine, name)
                t = time.perf_counter()
                result = fn(*ca, **ckw)
                if i >= start and name not in asked:
                    spent += time.perf_counter() - t
                if name in QUERIES:
                    asked.add(name)
                else:
                    asked.clear()
                if size is not None and len(result) != size:
                    same = False
        finally:
            vars(crypto)["_ephemeral_seed"] = drawn
            gc.unfreeze()
        return spent, same
