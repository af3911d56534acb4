"""The central records this cache holds data from (docs/design/multi-trust.md section 3).

A source is configuration (name, base URL, credentials) in the profile; the cache keeps only a
number per source, `sid`, so every cached row says which central record it came from and
survives a rename in the profile. The home source (where this team's encounters go) is always
sid 1: schema version 3 registers it, for an existing cache and a new one alike.

Sids are never reused (AUTOINCREMENT): a pending outbox row keeps the sid of the person it is
about after that source is removed, and a new source given the same number would make it
point at someone else.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import InvalidInput
from app.store._connection import Connection

HOME_SOURCE = 1
HOME_NAME = "home"  # sid 1's name until the profile names it (`ensure_source(name, "home")`)
ROLES = ("home", "read-only")
MAX_NAME_CHARS = 64

# Schema version 3. Kept as written then: later versions change it with their own DDL.
SCHEMA_V3 = """
CREATE TABLE source (
    sid INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('home', 'read-only')),
    added_at TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Source:
    sid: int
    name: str
    role: str
    added_at: str


def register_home(conn: Connection, at: str) -> None:
    conn.execute(
        "INSERT INTO source (sid, name, role, added_at) VALUES (?, ?, 'home', ?)",
        (HOME_SOURCE, HOME_NAME, at),
    )


def all_sources(conn: Connection) -> list[Source]:
    """Every registered source, home first."""
    return [
        Source(int(sid), name, role, added_at)
        for sid, name, role, added_at in conn.execute(
            "SELECT sid, name, role, added_at FROM source ORDER BY sid"
        )
    ]


def ensure(conn: Connection, name: str, role: str, at: str) -> int:
    """The sid of the source called `name`, registering it when new; call in a transaction.

    `role == "home"` always answers sid 1, renaming it when the profile calls its home source
    something else. A name already registered with the other role is refused: a source does
    not change role in place (remove it and add it again, which erases what it brought).
    """
    if role not in ROLES:
        raise InvalidInput(f"a source's role is one of {', '.join(ROLES)}", field="role")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            f"a source needs a name of 1 to {MAX_NAME_CHARS} characters", field="name"
        )
    row = conn.execute("SELECT sid, role FROM source WHERE name = ?", (name,)).fetchone()
    if row is not None:
        sid, held_role = int(row[0]), str(row[1])
        if held_role != role:
            raise InvalidInput(
                f"source {name!r} is registered as {held_role}; remove it and add it again "
                f"to make it {role}",
                field="role",
            )
        return sid
    if role == "home":
        conn.execute("UPDATE source SET name = ? WHERE sid = ?", (name, HOME_SOURCE))
        return HOME_SOURCE
    cur = conn.execute(
        "INSERT INTO source (name, role, added_at) VALUES (?, 'read-only', ?)", (name, at)
    )
    return int(cur.lastrowid or 0)


def sid_of(conn: Connection, name: str) -> int | None:
    row = conn.execute("SELECT sid FROM source WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else None
