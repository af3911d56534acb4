"""An audit trail the centre can verify (issue 12 finding 2, SECURITY.md 27).

Attacks are run on a real cache the way someone holding the PIN and a SQLCipher shell would:
change a row, delete one, cut the newest off, re-hash the whole chain after an edit. Each is
caught by the product's own check; a broken chain is not uploaded and is reported to the real
reference server, which also flags a gap in what a device uploads.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.services.records import ACCESS_REASONS, open_record
from app.services.session import unlock
from app.services.syncing import run_sync
from app.store import HOME_SOURCE, Store
from sync._ports import AuditRecord
from sync._push import audit_bundle
from sync._report import AuditIdentity
from sync.reference import ReferenceServer
from tests.conftest import TEST_PIN

REASON = ACCESS_REASONS[0]


def _patients(session: Any, n: int) -> list[str]:
    rows = session.store.conn.execute(
        "SELECT id FROM resource WHERE type = 'Patient' ORDER BY id LIMIT ?", (n,)
    ).fetchall()
    return [r[0] for r in rows]


def _open_four(session: Any) -> None:
    for pid in _patients(session, 4):
        open_record(session, pid, REASON)


def _rehash_all(session: Any) -> None:
    """Recompute every hash after an edit, as someone who read _audit.py would."""
    conn = session.store.conn
    prev = "0" * 64
    rows = conn.execute(
        "SELECT seq, at, user_id, action, patient_id, reason, event_id FROM audit ORDER BY seq"
    ).fetchall()
    for seq, at, user_id, action, patient_id, reason, event_id in rows:
        fields = {
            "at": at,
            "user_id": user_id,
            "action": action,
            "patient_id": patient_id,
            "reason": reason,
            "event_id": event_id,
        }
        body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(prev.encode() + body).hexdigest()
        conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest


ATTACKS = {
    "changed": (
        lambda s: s.store.conn.execute("UPDATE audit SET patient_id = 'someone' WHERE seq = 2"),
        "entry 2 was changed",
    ),
    "deleted": (
        lambda s: s.store.conn.execute("DELETE FROM audit WHERE seq = 3"),
        "entries 3-3 are missing",
    ),
    "newest cut off": (
        lambda s: s.store.conn.execute("DELETE FROM audit WHERE seq = 4"),
        "entries 4-4 were cut off the end",
    ),
    "re-hashed": (
        lambda s: (
            s.store.conn.execute("UPDATE audit SET patient_id = 'someone' WHERE seq = 2"),
            _rehash_all(s),
        ),
        "rewritten and their hashes recomputed",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_tampering_is_found_on_unlock(
    cohort_session: Any, profile_dir: Path, attack: str
) -> None:
    _open_four(cohort_session)
    assert cohort_session.audit_problems() == []
    tamper, expected = ATTACKS[attack]
    tamper(cohort_session)
    cohort_session.close()
    with unlock(profile_dir, "pc101", TEST_PIN) as again:
        assert any(expected in p for p in again.audit_broken), again.audit_broken


def test_kerbside_audit_lists_the_trail_and_fails_on_a_broken_chain(
    cohort_session: Any,
    profile_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _open_four(cohort_session)
    cohort_session.close()
    args = ["audit", "--profile", str(profile_dir), "--user", "pc101", "--pin-stdin", "--json"]
    monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
    assert main(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in lines[:-1]] == [1, 2, 3, 4]
    assert lines[-1] == {"verified": True, "entries": 4, "problems": []}
    with unlock(profile_dir, "pc101", TEST_PIN) as s:
        s.store.conn.execute("DELETE FROM audit WHERE seq = 2")
    monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
    assert main(args) == 1
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["verified"] is False and last["entries"] == 3
    assert "entries 2-2 are missing" in last["problems"]


def _device_events(reference: ReferenceServer, device: str) -> list[dict[str, Any]]:
    http = reference.session(admin=True)
    bundle = http.get(f"{reference.base_url}/AuditEvent", params={"_count": "500"}).json()
    events = [e["resource"] for e in bundle.get("entry", [])]
    return [e for e in events if e["source"]["observer"]["identifier"]["value"] == device]


def test_an_intact_trail_reaches_the_centre_with_sequence_and_chain(
    tablet: Any, reference: ReferenceServer
) -> None:
    run_sync(tablet)
    _open_four(tablet)
    report = run_sync(tablet)
    assert report.audit_uploaded == 4 and not report.audit_chain_broken
    device = tablet.profile.profile_id
    events = _device_events(reference, device)
    chain = sorted(
        {
            x["url"]: x.get("valueInteger", x.get("valueString"))
            for x in e["extension"][0]["extension"]
        }["sequence"]
        for e in events
    )
    assert chain == [1, 2, 3, 4]
    audit = reference.audit_chains()
    assert audit["devices"][device]["last_sequence"] == 4
    assert device not in audit["flagged"]


def test_a_broken_chain_is_not_uploaded_and_the_centre_is_told(
    tablet: Any, reference: ReferenceServer
) -> None:
    run_sync(tablet)
    _open_four(tablet)
    tablet.store.conn.execute("UPDATE audit SET patient_id = 'someone' WHERE seq = 2")
    report = run_sync(tablet)
    assert report.audit_chain_broken and report.audit_uploaded == 0
    assert any("audit chain is broken" in w for w in report.warnings)
    device = tablet.profile.profile_id
    audit = reference.audit_chains()
    assert device in audit["flagged"]
    assert any("entry 2 was changed" in r for r in audit["devices"][device]["reported_breaks"])
    assert tablet.store.audit_not_uploaded() == 4  # kept on the tablet for investigation
    run_sync(tablet)  # the same break is reported once, not once per sync
    assert len(reference.audit_chains()["devices"][device]["reported_breaks"]) == 1


def test_the_centre_flags_a_gap_and_a_break_in_what_a_device_uploads(
    reference: ReferenceServer,
) -> None:
    identity = AuditIdentity(device_id="tablet-x")
    h = [f"{i:064x}" for i in range(6)]
    records = [
        AuditRecord(
            f"e{seq}",
            "2026-03-02T09:00:00Z",
            "pc101",
            "open-record",
            None,
            REASON,
            seq=seq,
            prev_hash=prev,
            hash=digest,
        )
        for seq, prev, digest in [
            (1, "0" * 64, h[1]),
            (2, h[1], h[2]),
            (4, h[3], h[4]),  # 3 never arrived
            (5, h[0], h[5]),  # does not follow 4
        ]
    ]
    http = reference.session()
    answer = http.post(reference.base_url, json=audit_bundle(records, identity))
    assert answer.status_code == 200, answer.text
    device = reference.audit_chains()["devices"]["tablet-x"]
    assert device["gaps"] == [[3, 3]] and device["breaks"] == [5]
    admin = reference.session(admin=True)
    stats = admin.get(f"{reference.root_url}/admin/stats").json()
    assert "tablet-x" in stats["audit"]["flagged"]


def test_a_search_that_shows_people_is_audited_and_uploaded_with_its_query(
    tablet: Any,
    reference: ReferenceServer,
    profile_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.services.importer import import_ndjson

    import_ndjson(tablet, reference.config.seed_dir)
    tablet.close()
    monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
    args = ["search", "--profile", str(profile_dir), "--user", "pc101", "--pin-stdin", "a"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip()
    with unlock(profile_dir, "pc101", TEST_PIN) as s:
        entries = s.store.audit_entries()
        assert [(e.action, e.reason) for e in entries] == [("search", "a")]
        run_sync(s)
        events = _device_events(reference, s.profile.profile_id)
    queries = [base64.b64decode(e["entity"][0]["query"]).decode() for e in events]
    assert queries == ["a"]


def test_the_head_is_kept_when_several_entries_commit_together(tmp_path: Path) -> None:
    """A merged person's opening audits each Trust's record in one transaction: the chain's
    head kept outside the cache must follow the commit (else the newest entries could be
    cut off unnoticed), and a rolled-back entry must not move it."""
    heads: list[int] = []

    def entry(store: Store, n: int) -> None:
        store.audit(
            user_id="pc101",
            action="open-record",
            patient_id=f"p{n}",
            source=HOME_SOURCE,
            reason=REASON,
            event_id=f"e{n}",
        )

    with Store.create(tmp_path / "c.db", os.urandom(32)) as store:
        store.audit_committed = lambda seq, _digest: heads.append(seq)
        entry(store, 1)
        with store.transaction():
            entry(store, 2)
            entry(store, 3)
            assert heads == [1]  # not committed yet
        assert heads == [1, 2, 3]
        with pytest.raises(RuntimeError), store.transaction():
            entry(store, 4)
            raise RuntimeError("the opening failed")
        assert heads == [1, 2, 3]
