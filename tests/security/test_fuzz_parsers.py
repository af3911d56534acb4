"""Fuzzing every reader of outside data (issue 12, SECURITY.md 24 and 29).

Hypothesis builds JSON shaped like what a server sends (bundles, history pages,
CapabilityStatements, OperationOutcomes, token answers, device policies) with every field
also allowed to be any other JSON type, plus arbitrary `profile.json` documents. Each reader
may only answer or raise its declared error (BadResponse / DeviceRevoked / ProfileError...):
a TypeError, KeyError or AttributeError is a finding.

    CI (default, a few seconds):
        .venv/bin/python -m pytest tests/security/test_fuzz_parsers.py
    Long run (about 11 minutes; any failure is printed with its minimal example):
        nice -n 15 .venv/bin/python tests/security/fuzz_long.py [SECONDS_EACH] [TARGET...]
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import KerbsideError
from sync import BadResponse, DeviceRevoked, parse_capabilities
from sync._bundles import read_history, read_searchset, read_transaction_response
from sync._client import is_revocation, outcome_codes, outcome_text
from sync._engine import parse_policy

settings.register_profile(
    "fuzz-ci", max_examples=60, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(  # one round of the long run (fuzz_long.py repeats rounds)
    "fuzz-long", max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)
)
LONG = os.environ.get("KERBSIDE_FUZZ") == "long"
FUZZ = settings.get_profile("fuzz-long" if LONG else "fuzz-ci")
EXAMPLES: Counter[str] = Counter()  # inputs tried per target, printed at exit of a long run


def _count(name: str) -> None:
    EXAMPLES[name] += 1


if LONG:
    atexit.register(lambda: print(f"fuzz examples tried: {dict(EXAMPLES)}", file=sys.stderr))

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The well-formed value most of the time, any JSON value otherwise."""
    return st.one_of(strategy, strategy, anything)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()})


instant = st.sampled_from(
    ["2026-03-02T09:00:00Z", "2026-03-02T09:00:00.123+00:00", "not a date", "2026-13-40"]
)
patient = obj(
    resourceType=st.just("Patient"),
    id=st.text(min_size=1, max_size=10),
    meta=obj(versionId=st.text(max_size=3), lastUpdated=instant),
    name=st.lists(
        obj(family=st.text(max_size=10), given=st.lists(st.text(max_size=8))), max_size=2
    ),
)
entry = obj(
    fullUrl=st.text(max_size=20),
    resource=maybe(patient),
    request=obj(method=st.sampled_from(["DELETE", "PUT", "POST"]), url=st.text(max_size=20)),
    response=obj(status=st.sampled_from(["200 OK", "201 Created", "412", "x"]), location=st.text()),
)
bundle = obj(
    resourceType=st.just("Bundle"),
    type=st.sampled_from(["searchset", "history", "transaction-response", "batch"]),
    entry=st.lists(maybe(entry), max_size=4),
    link=st.lists(obj(relation=st.sampled_from(["next", "self"]), url=st.text(max_size=20))),
    total=st.integers(),
)
capability = obj(
    resourceType=st.just("CapabilityStatement"),
    fhirVersion=st.sampled_from(["4.0.1", "5.0.0"]),
    software=obj(name=st.text(max_size=8), version=st.text(max_size=4)),
    rest=st.lists(
        obj(
            mode=st.just("server"),
            interaction=st.lists(obj(code=st.sampled_from(["transaction", "batch"]))),
            resource=st.lists(
                obj(
                    type=st.sampled_from(["Patient", "Encounter", "Group"]),
                    interaction=st.lists(obj(code=st.text(max_size=12))),
                    conditionalCreate=st.booleans(),
                    searchParam=st.lists(obj(name=st.text(max_size=8))),
                    operation=st.lists(obj(name=st.text(max_size=8), definition=st.text())),
                ),
                max_size=3,
            ),
            operation=st.lists(obj(name=st.text(max_size=8), definition=st.text(max_size=30))),
            searchParam=st.lists(obj(name=st.text(max_size=8))),
        ),
        max_size=2,
    ),
)
outcome = obj(
    resourceType=st.just("OperationOutcome"),
    issue=st.lists(
        obj(
            severity=st.sampled_from(["error", "fatal"]),
            code=st.sampled_from(["security", "invalid"]),
            details=obj(
                text=st.text(max_size=10), coding=st.lists(obj(system=st.text(), code=st.text()))
            ),
            diagnostics=st.text(max_size=10),
            expression=st.lists(st.text(max_size=5)),
        ),
        max_size=3,
    ),
)
policy = obj(
    resourceType=st.just("Parameters"),
    parameter=st.lists(
        obj(
            name=st.sampled_from(["cache-ttl-hours", "purge_after_hours", "revoked", "x"]),
            valueDecimal=st.floats(),
            valueBoolean=st.booleans(),
        ),
        max_size=4,
    ),
)


@FUZZ
@given(maybe(bundle))
def test_searchset_and_history_readers_only_raise_bad_response(body: Any) -> None:
    _count("searchset_and_history_readers_only_raise_bad_response")
    for read in (
        lambda: read_searchset(body, "Patient", "pull"),
        lambda: read_history(body, "Patient", "history", 0),
        lambda: read_transaction_response(body, 1, "push"),
    ):
        try:
            read()
        except BadResponse:
            pass


@FUZZ
@given(maybe(capability))
def test_capability_reader_only_raises_bad_response(body: Any) -> None:
    _count("capability_reader_only_raises_bad_response")
    try:
        parse_capabilities(body)
    except BadResponse:
        pass


@FUZZ
@given(maybe(outcome))
def test_operation_outcome_readers_only_raise_bad_response(body: Any) -> None:
    _count("operation_outcome_readers_only_raise_bad_response")
    try:
        assert isinstance(outcome_text(body), str)
        outcome_codes(body)
        is_revocation(body)
    except BadResponse:
        pass


@FUZZ
@given(maybe(policy))
def test_device_policy_reader_only_raises_declared_errors(body: Any) -> None:
    _count("device_policy_reader_only_raises_declared_errors")
    try:
        parsed = parse_policy(body)
    except (DeviceRevoked, BadResponse):
        return
    assert all(isinstance(v, float | int) for v in parsed.values())


token_answer = obj(
    access_token=st.text(max_size=10),
    expires_in=st.integers() | st.floats(),
    token_type=st.just("bearer"),
    error=st.text(max_size=8),
    error_description=st.text(max_size=8),
)


@FUZZ
@given(maybe(token_answer), st.sampled_from([200, 400, 401, 403, 500]))
def test_token_answers_only_raise_sync_errors(body: Any, status: int) -> None:
    """The token endpoint's answer through the real client, served by a fake HTTP session
    (the network is outside this reader; the reader is what is fuzzed)."""
    _count("token_answers_only_raise_sync_errors")
    import io

    import requests
    import urllib3

    from sync import ClientCredentials, FhirClient, RetryPolicy, SyncError

    class FakeHttp(requests.Session):
        def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            resp = requests.Response()
            resp.status_code = status
            raw = json.dumps(body).encode()
            resp.raw = urllib3.HTTPResponse(
                body=io.BytesIO(raw), preload_content=False, headers={}, status=status
            )
            return resp

    client = FhirClient(
        "https://central.example/fhir",
        FakeHttp(),
        auth=ClientCredentials("https://central.example/token", "t", "s"),
        retry=RetryPolicy(attempts=1),
        sleep=lambda _s: None,
    )
    try:
        client._access_token()
    except SyncError:
        pass


source_doc = obj(
    name=st.sampled_from(["home", "trust-2", "Bad Name", ""]),
    base_url=st.text(max_size=10),
    client_id=st.text(max_size=5),
    token_url=st.none() | st.text(max_size=5),
    display_name=st.none() | st.text(max_size=5),
    role=st.sampled_from(["home", "read-only", "owner"]),
)
profile_doc = obj(
    format=st.sampled_from([1, 2, 3, 4]),
    profile_id=st.text(max_size=8),
    keyring_backend=st.text(max_size=8),
    kdf=obj(time_cost=st.integers(), memory_kib=st.integers(), parallelism=st.integers()),
    lockout=obj(max_failures=st.integers(), free_attempts=st.integers()),
    failures=st.integers(),
    locked_until=st.floats(),
    users=st.dictionaries(st.text(max_size=5), anything, max_size=2),
    server=obj(base_url=st.text(max_size=10), client_id=st.text(max_size=5)),
    sources=st.lists(source_doc, max_size=3),
    settings=st.dictionaries(st.text(max_size=8), anything, max_size=3),
    mac=st.text(max_size=64),
    generation=st.integers(),
    wiped=anything,
)


@FUZZ
@given(maybe(profile_doc))
def test_profile_json_only_raises_profile_errors(tmp_path_factory: Any, doc: Any) -> None:
    _count("profile_json_only_raises_profile_errors")
    from app.security import Profile

    directory: Path = tmp_path_factory.mktemp("fuzzprofile")
    (directory / "profile.json").write_text(json.dumps(doc))
    try:
        profile = Profile.load(directory)
        sources = profile.sources  # read before any PIN (status, doctor): never a crash
        assert profile.server is None or sources[0].is_home
        profile.unlock("pc101", "246810")
    except KerbsideError:
        pass


@pytest.mark.parametrize("text", ["{", "[]", "null", '"x"', "{}", '{"format": 2}'])
def test_profile_json_that_is_not_an_object_is_a_profile_error(tmp_path: Path, text: str) -> None:
    from app.security import Profile

    (tmp_path / "profile.json").write_text(text)
    with pytest.raises(KerbsideError):
        Profile.load(tmp_path)


site_doc = st.fixed_dictionaries(
    {},
    optional={
        "locked": maybe(
            st.lists(st.sampled_from(["central_record", "team", "url", "sources", "x"]))
        ),
        "central_record": maybe(
            obj(
                url=st.sampled_from(["https://fhir.example/R4", "http://evil.example", "x"]),
                client_id=st.text(max_size=8),
                token_url=st.text(max_size=12),
                ca_bundle=st.text(max_size=8),
                cohort_group=st.text(max_size=8),
                trust_public_key=st.text(max_size=50),
                display_name=st.text(max_size=12),
                ods_code=st.text(max_size=6),
            )
        ),
        "sources": maybe(
            st.lists(
                obj(
                    name=st.sampled_from(["trust-2", "trust-2", "home", "Bad name"]),
                    url=st.sampled_from(["https://fhir.example/R4", "http://evil.example"]),
                    client_id=st.text(max_size=8),
                    token_url=st.text(max_size=12),
                    ca_bundle=st.text(max_size=8),
                    display_name=st.text(max_size=12),
                    ods_code=st.text(max_size=6),
                    role=st.sampled_from(["read-only", "home", "x"]),
                ),
                max_size=3,
            )
        ),
        "team": maybe(obj(name=st.text(max_size=12), ods_code=st.text(max_size=6))),
        "policies": maybe(
            obj(
                idle_lock_minutes=st.floats() | st.integers(),
                pin_min_length=st.integers(),
                cache_ttl_hours=st.floats(),
                wipe_after_failures=st.integers(),
            )
        ),
    },
)


@FUZZ
@given(site_doc)
def test_site_configuration_only_raises_site_config_errors(tmp_path_factory: Any, doc: Any) -> None:
    _count("site_configuration_only_raises_site_config_errors")
    from app.services.site import SiteConfigError, parse_site_config

    path: Path = tmp_path_factory.mktemp("site") / "site.toml"
    try:
        parse_site_config(path, doc)
    except SiteConfigError:
        pass
