"""A provider's books (SQLite): tokens spent, so none is taken twice, and tokens sold, by
member (the provider knows who paid), so a member's monthly allowance holds across restarts.

The only IO of the provider's part of the gateway; ':memory:' for tests. Every gateway of an
operator reads the same round outputs, so their `spent` tables agree without talking.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spent (token BLOB PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sold (
    member TEXT NOT NULL, kind INTEGER NOT NULL, request INTEGER NOT NULL,
    period INTEGER NOT NULL, count INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (member, kind, request)
);
"""


class Ledger:
    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each is kept
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def spend(self, token: bytes, at: float) -> bool:
        """Take a token; False if it was taken before."""
        cur = self.db.execute("INSERT OR IGNORE INTO spent VALUES (?, ?)", (token, at))
        return cur.rowcount == 1

    def sale(self, member: str, kind: int, request: int) -> int | None:
        """How many a request of `member`'s was answered with before (None: never)."""
        row = self.db.execute(
            "SELECT count FROM sold WHERE member = ? AND kind = ? AND request = ?",
            (member, kind, request),
        ).fetchone()
        return None if row is None else int(row[0])

    def sell(
        self, member: str, kind: int, request: int, period: int, count: int, at: float
    ) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO sold VALUES (?, ?, ?, ?, ?, ?)",
            (member, kind, request, period, count, at),
        )

    def sold_since(self, member: str, kind: int, since: float) -> int:
        row = self.db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM sold WHERE member = ? AND kind = ? AND at >= ?",
            (member, kind, since),
        ).fetchone()
        return int(row[0])

    def issued_for(self, member: str, kind: int, period: int) -> int | None:
        """The request a member's credential for `period` answered (None: none yet)."""
        row = self.db.execute(
            "SELECT request FROM sold WHERE member = ? AND kind = ? AND period = ?",
            (member, kind, period),
        ).fetchone()
        return None if row is None else int(row[0])

    def totals(self) -> tuple[int, int, int]:
        """(payment tokens sold, rating credentials issued, payment tokens spent), all time."""
        sold = dict(self.db.execute("SELECT kind, SUM(count) FROM sold GROUP BY kind").fetchall())
        spent = self.db.execute("SELECT COUNT(*) FROM spent").fetchone()[0]
        return int(sold.get(1, 0)), int(sold.get(2, 0)), int(spent)

    def close(self) -> None:
        self.db.close()
