"""Fuzz the NDJSON import: outside data gives a declared error or a clean load, never a crash
or a half-written batch (SECURITY.md 24)."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import InvalidInput
from app.services.importer import import_ndjson
from app.services.session import Session

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
lines = st.one_of(
    st.binary(max_size=40),
    json_values.map(orjson.dumps),
    st.builds(
        lambda i, extra: orjson.dumps({"resourceType": "Patient", "id": f"p{i}", **extra}),
        st.integers(0, 5),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "meta",
                    "birthDate",
                    "identifier",
                    "address",
                    "gender",
                    "telecom",
                    "active",
                    "deceasedBoolean",
                ]
            ),
            json_values,
            max_size=2,
        ),
    ),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.lists(lines, min_size=1, max_size=6))
def test_import_never_crashes_or_half_writes(
    session: Session, tmp_path: Path, body: list[bytes]
) -> None:
    gen = tmp_path / "gen"
    gen.mkdir(exist_ok=True)
    (gen / "Patient.ndjson").write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in body))
    before = session.store.count_by_type()
    try:
        import_ndjson(session, gen)
    except InvalidInput:
        # A batch is written only after every line in it parsed: the cache is as it was.
        assert session.store.count_by_type() == before
