"""A provider's books (SQLite): tokens spent, so none is taken twice; tokens sold, by member
(the provider knows who paid), with the answer given, so a request asked again gets that answer
and no more, and a member's monthly allowance holds across restarts; and the rating issuer's
key of each period, so credentials issued before a restart stay good.

The only IO of the provider's part of the gateway; ':memory:' for tests. Every gateway of an
operator reads the same round outputs, so their `spent` tables agree without talking (as long
as each is up: one that was down missed what was spent meanwhile).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from lanon.common.errors import ConfigError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spent (token BLOB PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sold (
    member TEXT NOT NULL, kind INTEGER NOT NULL, request INTEGER NOT NULL,
    period INTEGER NOT NULL, count INTEGER NOT NULL, at REAL NOT NULL,
    asked BLOB NOT NULL, answer BLOB NOT NULL,
    PRIMARY KEY (member, kind, request)
);
CREATE TABLE IF NOT EXISTS period_keys (period INTEGER PRIMARY KEY, key BLOB NOT NULL);
"""


@dataclass(frozen=True)
class Sale:
    asked: bytes  # a digest of the blinded messages
    answer: bytes  # the blind signatures given, one after the other


class Ledger:
    def __init__(self, path: Path | str = ":memory:") -> None:
        """ConfigError if the file cannot be made or is another lanon's ledger."""
        self.path = str(path)
        try:
            if self.path != ":memory:":  # the issuer's keys are in it: owner only
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each kept
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if tables and version != SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: a ledger of schema {version}, expected {SCHEMA_VERSION} "
                    "(from another lanon: keep it aside and start a new one)"
                )
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.path}: cannot open the ledger: {exc}") from None

    def spend(self, token: bytes, at: float) -> bool:
        """Take a token; False if it was taken before."""
        cur = self.db.execute("INSERT OR IGNORE INTO spent VALUES (?, ?)", (token, at))
        return cur.rowcount == 1

    def sale(self, member: str, kind: int, request: int) -> Sale | None:
        """What a request of `member`'s was answered with before (None: never)."""
        row = self.db.execute(
            "SELECT asked, answer FROM sold WHERE member = ? AND kind = ? AND request = ?",
            (member, kind, request),
        ).fetchone()
        return None if row is None else Sale(bytes(row[0]), bytes(row[1]))

    def sell(
        self,
        member: str,
        kind: int,
        request: int,
        period: int,
        count: int,
        at: float,
        sale: Sale,
    ) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO sold VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (member, kind, request, period, count, at, sale.asked, sale.answer),
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

    def keep_key(self, period: int, key: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO period_keys VALUES (?, ?)", (period, key))
        self.db.execute("DELETE FROM period_keys WHERE period < ?", (period - 3,))

    def period_keys(self) -> dict[int, bytes]:
        return {int(p): bytes(k) for p, k in self.db.execute("SELECT period, key FROM period_keys")}

    def totals(self) -> tuple[int, int, int]:
        """(payment tokens sold, rating credentials issued, payment tokens spent), all time."""
        sold = dict(self.db.execute("SELECT kind, SUM(count) FROM sold GROUP BY kind").fetchall())
        spent = self.db.execute("SELECT COUNT(*) FROM spent").fetchone()[0]
        return int(sold.get(1, 0)), int(sold.get(2, 0)), int(spent)

    def close(self) -> None:
        self.db.close()
