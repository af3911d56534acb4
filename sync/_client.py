"""A small FHIR R4 REST client over one `requests.Session`: TLS, tokens, retries, parsing.

The session is passed in (tests aim it at the reference server on 127.0.0.1). Rules:

- TLS verification is always on; an optional CA bundle replaces the system store. Plain
  `http://` is refused unless the host is a loopback address (tests, the local demo).
- Every URL the client follows must be on the base URL's origin: a `next` link elsewhere
  would carry our bearer token to a stranger.
- Retries are ours, for GET and POST alike: capped exponential backoff with full jitter
  (AWS "Exponential Backoff and Jitter"), `Retry-After` honoured, on 5xx/429/408, timeouts,
  dropped connections and truncated or unparseable bodies. urllib3's `Retry` would not retry a
  POST after a read error; our POSTs are transaction Bundles made idempotent by conditional
  create, so retrying them is exactly what we want.
- Bodies are read with a size cap, parsed with orjson, and only then handed on; the caller
  validates their FHIR shape.
- Nothing here logs a URL query, a body or a token: log lines carry a label ("search Patient"),
  the status and timings.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
import requests.adapters
import urllib3

from sync._auth import SMART_CONFIGURATION, TokenSource
from sync._exceptions import (
    AuthFailed,
    BadResponse,
    Cancelled,
    ConnectionLost,
    DeviceRevoked,
    InsecureConnection,
    ServerRejected,
    ServerUnavailable,
    SyncError,
    Timeout,
    TransientError,
)

log = logging.getLogger("kerbside.sync")

FHIR_JSON = "application/fhir+json"
SIGNAL_SYSTEM = "https://kerbside.example/CodeSystem/server-signal"
DEVICE_REVOKED_CODE = "device-revoked"
# OperationOutcome issue codes that describe a passing condition, not a bad request.
TRANSIENT_ISSUE_CODES = frozenset({"transient", "lock-error", "throttled", "timeout"})
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries before the run gives up.

    `attempts` counts the first try. Delays are full jitter: uniform(0, min(cap, base * 2**n)).
    A `Retry-After` longer than `max_retry_after_s` ends the run instead of stalling it.
    `bad_body_attempts` bounds retries of a 2xx whose body would not parse: a proxy that
    truncates once is transient, a server that always sends broken JSON is not.
    """

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 120.0
    bad_body_attempts: int = 3

    def delay_s(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2**retry)))


@dataclass(frozen=True)
class Timeouts:
    """`connect_s` and `read_s` bound each socket wait; `total_s` bounds one whole request
    (headers and body), so a server trickling a byte every few seconds cannot hold a sync
    open for ever (SECURITY.md 29). Bulk Data file streams (`open_stream`) have their own."""

    connect_s: float = 10.0
    read_s: float = 60.0
    total_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A parsed 2xx answer."""

    status: int
    body: Any
    headers: Mapping[str, str]
    size: int

    @property
    def server_date(self) -> datetime | None:
        """The server's clock from the `Date` header (second precision), if it sent one."""
        value = self.headers.get("Date")
        if not value:
            return None
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url_allowed(url: str, what: str = "the central record") -> None:
    """https everywhere; http only to this machine. Raises InsecureConnection otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    if parts.scheme == "http":
        raise InsecureConnection(
            f"{what} must be reached over https (plain http is allowed only on this machine)"
        )
    raise InsecureConnection(f"{what} address must be an https:// URL")


def _issues(outcome: Any) -> list[Any]:
    """An OperationOutcome's `issue` array; BadResponse when it is not one (`"issue": 5`)."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return []
    issues = outcome.get("issue")
    if issues is None:
        return []
    if not isinstance(issues, list):
        raise BadResponse("the server sent a malformed OperationOutcome")
    return issues


def outcome_text(outcome: Any) -> str:
    """A one-line reason from an OperationOutcome: each issue's details.text or diagnostics.

    This is the server's wording for an officer to read next to a rejected record; it is not
    logged (a server may quote the record back).
    """
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    texts: list[str] = []
    for issue in _issues(outcome):
        if not isinstance(issue, dict):
            continue
        raw_details = issue.get("details")
        details = raw_details if isinstance(raw_details, dict) else {}
        text = details.get("text") or issue.get("diagnostics") or issue.get("code")
        where = issue.get("expression") or issue.get("location")
        if isinstance(text, str) and text:
            if isinstance(where, list) and where and isinstance(where[0], str):
                text = f"{text} ({where[0]})"
            if text not in texts:
                texts.append(text)
    return "; ".join(texts)[:2000]


def outcome_codes(outcome: Any) -> set[str]:
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return set()
    return {str(i.get("code")) for i in _issues(outcome) if isinstance(i, dict)}


def is_revocation(outcome: Any) -> bool:
    """Device revocation: issue code `security` with the server-signal `device-revoked`."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return False
    for issue in _issues(outcome):
        if not isinstance(issue, dict) or issue.get("code") != "security":
            continue
        details = issue.get("details")
        codings = details.get("coding") if isinstance(details, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            if (
                isinstance(coding, dict)
                and coding.get("system") == SIGNAL_SYSTEM
                and coding.get("code") == DEVICE_REVOKED_CODE
            ):
                return True
    return False


class FhirClient:
    """One FHIR base URL, one `requests.Session`, one token at a time.

    Not thread-safe: a sync run owns its client. `cancel` is checked before every attempt
    and during backoff sleeps.
    """

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        *,
        auth: TokenSource | None = None,
        ca_bundle: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        max_body_bytes: int = 16 * 1024 * 1024,
        cancel: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        renew_margin_s: float = 30.0,
    ) -> None:
        check_url_allowed(base_url)
        if auth is not None:
            check_url_allowed(auth.token_url, "the token endpoint")
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._http = session
        # TLS verification stays on: True, or the path of a CA bundle that replaces the
        # system store for a Trust's private CA. There is no way to turn it off.
        self._verify: bool | str = ca_bundle if ca_bundle else True
        self._auth = auth
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._max_body = max_body_bytes
        self.cancel = cancel
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter, not a secret
        self._renew_margin_s = renew_margin_s
        self._token: str | None = None
        self._token_expires: float = 0.0
        # Counters for the report and the benchmark.
        self.requests = 0
        self.retries = 0
        self.bytes_received = 0
        self.token_fetches = 0
        # The central record's clock (`Date` of the last 2xx): the trusted time a sync leaves
        # in the cache, so a tablet clock set back or forward cannot stretch its lifetime.
        self.server_date: datetime | None = None

    # -- public ------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def resolve(self, link: str) -> str:
        """A server-given link (next page) as an absolute URL on our origin, or BadResponse."""
        absolute = urljoin(self.base_url + "/", link)
        if _origin(absolute) != self._origin:
            raise BadResponse("the server sent a paging link to another host; refusing it")
        return absolute

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        label: str,
        accept: str = FHIR_JSON,
    ) -> Answer:
        return self.request("GET", url, params=params, label=label, accept=accept)

    def post(
        self,
        url: str,
        body: bytes,
        *,
        label: str,
        headers: Mapping[str, str] | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> Answer:
        return self.request(
            "POST", url, body=body, label=label, headers=headers, before_attempt=before_attempt
        )

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("sync cancelled")

    def drop_token(self) -> None:
        """Forget the access token (the next request fetches a new one)."""
        self._token = None
        self._token_expires = 0.0

    # -- the retry loop ----------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        label: str,
        accept: str = FHIR_JSON,
        headers: Mapping[str, str] | None = None,
        before_attempt: Callable[[], None] | None = None,
        fatal_is_final: bool = False,
    ) -> Answer:
        """Send with retries; returns a parsed 2xx answer or raises a SyncError.

        `before_attempt` runs before each try leaves (the outbox counts attempts with it).
        `fatal_is_final`: a 5xx whose OperationOutcome has a `fatal` issue is the answer, not
        a passing fault (a Bulk Data status URL reports a failed export that way), so it
        raises ServerRejected at once instead of being retried.

        A 401 drops the token and tries once more with a fresh one (it may have expired
        early, or been revoked server-side for rotation); a second 401 is AuthFailed.
        """
        if _origin(url) != self._origin:
            raise BadResponse(f"{label}: refusing a URL outside the central record")
        sent_headers = {"Accept": accept}
        if body is not None:
            sent_headers["Content-Type"] = FHIR_JSON
        if headers:
            sent_headers.update(headers)
        retry = 0
        bad_bodies = 0
        renewed = False
        while True:
            self.check_cancel()
            if self._auth is not None:
                sent_headers["Authorization"] = f"Bearer {self._access_token()}"
            if before_attempt is not None:
                before_attempt()
            try:
                status, resp_headers, raw = self._send(method, url, params, body, sent_headers)
            except TransientError as exc:
                retry = self._backoff(retry, label, exc, None)
                continue
            if 200 <= status < 300:
                try:
                    parsed = orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    bad_bodies += 1
                    if bad_bodies >= self._retry.bad_body_attempts:
                        raise BadResponse(
                            f"{label}: the server sent a body that is not valid JSON"
                        ) from None
                    retry = self._backoff(retry, label, BadResponse("invalid JSON"), None)
                    continue
                answer = Answer(status, parsed, resp_headers, len(raw))
                self.server_date = answer.server_date or self.server_date
                return answer
            outcome = _maybe_json(raw)
            if fatal_is_final and status >= 500 and _is_fatal(outcome):
                reason = outcome_text(outcome)
                raise ServerRejected(
                    f"{label}: {reason or 'the central record failed'}",
                    status=status,
                    outcome=_as_outcome(outcome),
                )
            if (
                status == 401
                and self._auth is not None
                and not renewed
                and not is_revocation(outcome)
            ):
                renewed = True
                self.drop_token()
                continue
            self._raise_for(status, outcome, resp_headers, label, retry)
            retry = self._backoff(
                retry,
                label,
                ServerUnavailable(f"{label}: the central record answered {status}", status=status),
                _retry_after_s(resp_headers),
            )

    def _raise_for(
        self, status: int, outcome: Any, headers: Mapping[str, str], label: str, retry: int
    ) -> None:
        """Raise for a non-2xx answer unless it is worth another try (then return)."""
        if is_revocation(outcome):
            raise DeviceRevoked("this device has been revoked by the central record")
        if status in (401, 403):
            reason = outcome_text(outcome)
            raise AuthFailed(
                f"{label}: the central record refused access ({status})"
                + (f": {reason}" if reason else ""),
                status=status,
                outcome=_as_outcome(outcome),
            )
        if status in _RETRY_STATUSES:
            return
        if 300 <= status < 400:
            raise BadResponse(f"{label}: unexpected redirect ({status}); check the server address")
        if (
            400 <= status < 500
            and outcome_codes(outcome)
            and outcome_codes(outcome) <= TRANSIENT_ISSUE_CODES
        ):
            return
        if 400 <= status < 500:
            reason = outcome_text(outcome)
            raise ServerRejected(
                f"{label}: the central record refused the request ({status})"
                + (f": {reason}" if reason else ""),
                status=status,
                outcome=_as_outcome(outcome),
            )
        if status >= 500:
            return
        raise BadResponse(f"{label}: unexpected HTTP status {status}")

    def _backoff(self, retry: int, label: str, exc: SyncError, retry_after: float | None) -> int:
        """Sleep before the next try, or raise `exc` when the tries are used up."""
        if retry + 1 >= self._retry.attempts:
            raise exc
        if retry_after is not None and retry_after > self._retry.max_retry_after_s:
            raise ServerUnavailable(
                f"{label}: the central record asked us to come back in {int(retry_after)} s",
                retry_after_s=retry_after,
            )
        delay = self._retry.delay_s(retry, self._rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.retries += 1
        log.info("%s: %s; retry %d in %.2f s", label, type(exc).__name__, retry + 1, delay)
        self._pause(delay)
        return retry + 1

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self.check_cancel()
            self._sleep(seconds)
            self.check_cancel()
        elif self.cancel is not None:
            if self.cancel.wait(seconds):
                raise Cancelled("sync cancelled")
        else:
            time.sleep(seconds)

    # -- one HTTP exchange -------------------------------------------------------------------
    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request and its whole body (size-capped); transport errors become SyncErrors."""
        self.requests += 1
        started = time.monotonic()
        try:
            resp = self._http.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                verify=self._verify,
                timeout=(self._timeouts.connect_s, self._timeouts.read_s),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.SSLError as exc:
            raise InsecureConnection(
                "the central record's TLS certificate could not be verified; sync stopped "
                "(check the device clock and the server's certificate)"
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise Timeout("the central record did not answer in time") from exc
        except requests.exceptions.ConnectionError as exc:
            raise ConnectionLost("the connection to the central record failed") from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionLost("the request to the central record failed") from exc
        raw = self._read_body(resp, started)
        self.bytes_received += len(raw)
        return resp.status_code, resp.headers, raw

    def _read_body(self, resp: requests.Response, started: float) -> bytes:
        """The whole body, decompressed, capped at `max_body_bytes` and read before the
        request's overall deadline; the one reader for every answer, token endpoint included.

        `read1` returns what has arrived (never waits to fill a buffer), so the deadline is
        checked however slowly the bytes come; sizes count decoded bytes, so a gzip bomb
        stops at the cap, not after inflating.
        """
        deadline = started + self._timeouts.total_s
        try:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self._max_body:
                raise BadResponse("the central record sent an answer larger than allowed")
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise Timeout(
                        "the central record took too long to send its answer; sync stopped"
                    )
                chunk = resp.raw.read1(1 << 16, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self._max_body:
                    raise BadResponse("the central record sent an answer larger than allowed")
                chunks.append(chunk)
        except (
            requests.exceptions.Timeout,
            urllib3.exceptions.ReadTimeoutError,
            TimeoutError,
        ) as exc:
            raise Timeout("the central record stopped sending mid-answer") from exc
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            requests.exceptions.ConnectionError,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as exc:
            raise ConnectionLost("the connection dropped mid-answer") from exc
        finally:
            resp.close()
        return b"".join(chunks)

    # -- streamed downloads (Bulk Data files) --------------------------------------------------
    def open_stream(
        self, url: str, *, label: str, with_token: bool, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """One GET whose body the caller reads in chunks (`iter_content`) and then closes:
        Bulk Data files are far too large for `request`'s whole-body read. No retries here:
        the caller resumes where the stream broke (it knows how much it has used).

        The token goes only to our own origin; a file elsewhere (IG: `requiresAccessToken`
        false, e.g. pre-signed storage URLs) is fetched without it, over https. A non-2xx
        answer raises as `request` would, after reading at most `max_body_bytes` of it.
        """
        self.check_cancel()
        same_origin = _origin(url) == self._origin
        if with_token and not same_origin:
            raise BadResponse(f"{label}: refusing to send our token outside the central record")
        check_url_allowed(url, "a bulk data file")
        sent = {"Accept": "application/fhir+ndjson", **(headers or {})}
        if with_token and self._auth is not None:
            sent["Authorization"] = f"Bearer {self._access_token()}"
        self.requests += 1
        try:
            resp = self._http.get(
                url,
                headers=sent,
                verify=self._verify,
                stream=True,
                timeout=(self._timeouts.connect_s, self._timeouts.read_s),
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise InsecureConnection(
                "a bulk data file's TLS certificate could not be verified"
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise Timeout(f"{label}: the central record did not answer in time") from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionLost(f"{label}: the connection failed") from exc
        if 200 <= resp.status_code < 300:
            return resp
        try:
            raw = resp.raw.read(self._max_body, decode_content=True) or b""
        except (requests.exceptions.RequestException, OSError):
            raw = b""
        finally:
            resp.close()
        outcome = _maybe_json(raw)
        if resp.status_code == 401 and self._auth is not None:
            self.drop_token()  # the caller's retry fetches a fresh one
            raise ConnectionLost(f"{label}: the token was refused; renewing it")
        self._raise_for(resp.status_code, outcome, resp.headers, label, 0)
        raise ServerUnavailable(
            f"{label}: the central record answered {resp.status_code}",
            status=resp.status_code,
            retry_after_s=_retry_after_s(resp.headers),
        )

    def wait_before_retry(
        self, retry: int, label: str, exc: SyncError, retry_after: float | None = None
    ) -> int:
        """The retry policy's pause before try `retry + 1` (or `exc` when tries are used up)."""
        return self._backoff(retry, label, exc, retry_after)

    def pause(self, seconds: float) -> None:
        """Sleep that a cancel interrupts (polling a Bulk Data status URL)."""
        self._pause(seconds)

    # -- tokens ------------------------------------------------------------------------------
    def _access_token(self) -> str:
        now = time.monotonic()
        if self._token is None or now >= self._token_expires - self._renew_margin_s:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def _fetch_token(self) -> None:
        """POST the token form, with the same retries as any request; never logs the token."""
        assert self._auth is not None
        form, basic = self._auth.token_form()
        label = "token request"
        retry = 0
        while True:
            self.check_cancel()
            self.requests += 1
            self.token_fetches += 1
            started = time.monotonic()
            try:
                resp = self._http.post(
                    self._auth.token_url,
                    data=form,
                    auth=basic,
                    verify=self._verify,
                    headers={"Accept": "application/json"},
                    allow_redirects=False,
                    timeout=(self._timeouts.connect_s, self._timeouts.read_s),
                    stream=True,
                )
            except requests.exceptions.SSLError as exc:
                raise InsecureConnection(
                    "the token endpoint's TLS certificate could not be verified"
                ) from exc
            except requests.exceptions.Timeout:
                retry = self._backoff(
                    retry, label, Timeout("the token endpoint did not answer in time"), None
                )
                continue
            except requests.exceptions.RequestException:
                retry = self._backoff(
                    retry,
                    label,
                    ConnectionLost("the connection to the token endpoint failed"),
                    None,
                )
                continue
            try:
                raw = self._read_body(resp, started)
            except BadResponse:
                raise BadResponse("the token endpoint sent an answer larger than allowed") from None
            except (Timeout, ConnectionLost) as exc:
                retry = self._backoff(retry, label, exc, None)
                continue
            body = _maybe_json(raw)
            if (
                resp.status_code == 200
                and isinstance(body, dict)
                and isinstance(body.get("access_token"), str)
                and body["access_token"]
            ):
                expires_in = body.get("expires_in")
                lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
                self._token = body["access_token"]
                self._token_expires = time.monotonic() + max(lifetime, 1.0)
                return
            if resp.status_code == 200:
                retry = self._backoff(
                    retry,
                    label,
                    BadResponse("the token endpoint sent no usable access token"),
                    None,
                )
                continue
            if is_revocation(body) or _token_revocation(body):
                raise DeviceRevoked("this device has been revoked by the central record")
            if resp.status_code in _RETRY_STATUSES:
                retry = self._backoff(
                    retry,
                    label,
                    ServerUnavailable(
                        f"the token endpoint answered {resp.status_code}", status=resp.status_code
                    ),
                    _retry_after_s(resp.headers),
                )
                continue
            error = body.get("error") if isinstance(body, dict) else None
            reason = f" ({error})" if isinstance(error, str) and error.isascii() else ""
            raise AuthFailed(
                f"the central record refused this device's credentials{reason}; "
                "check the client id and secret, or enrol again"
            )


HttpSession = requests.Session
"""The connection pool type callers pass in (so they need not import `requests`)."""


class _Tls12Adapter(requests.adapters.HTTPAdapter):
    """TLS 1.2 or newer, set explicitly rather than left to the OpenSSL build's default
    (SECURITY.md 15); verification stays on (the context verifies, `verify=` may add a CA)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = tls_context()
        super().init_poolmanager(*args, **kwargs)


def tls_context() -> ssl.SSLContext:
    """Certificate and host name checked, TLS 1.2+; no CAs loaded here: requests loads the
    one trust store per request (certifi's, or the Trust's bundle, which replaces it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def new_http_session() -> requests.Session:
    """One connection pool per sync run; TLS verification is set per request by the client,
    the minimum TLS version here."""
    http = requests.Session()
    http.mount("https://", _Tls12Adapter())
    http.headers["User-Agent"] = "Kerbside/0.1 (+FHIR R4 sync)"
    return http


def discover_token_url(
    session: requests.Session,
    base_url: str,
    *,
    ca_bundle: str | None = None,
    timeouts: Timeouts | None = None,
) -> str:
    """`token_endpoint` from `[base]/.well-known/smart-configuration` (SMART App Launch 2)."""
    client = FhirClient(
        base_url,
        session,
        ca_bundle=ca_bundle,
        timeouts=timeouts,
        retry=RetryPolicy(attempts=2, base_s=0.2),
    )
    answer = client.get(
        client.url(SMART_CONFIGURATION), label="SMART configuration", accept="application/json"
    )
    token_url = answer.body.get("token_endpoint") if isinstance(answer.body, dict) else None
    if not isinstance(token_url, str) or not token_url:
        raise BadResponse("the server's SMART configuration names no token endpoint")
    check_url_allowed(token_url, "the token endpoint")
    return token_url


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), f"{(parts.hostname or '').lower()}:{port}"


def _token_revocation(body: Any) -> bool:
    """The OAuth form of the device-revoked signal: `unauthorized_client` (the secret was
    right, the client may not have tokens) naming `device-revoked` in its description or URI."""
    if not isinstance(body, dict) or body.get("error") != "unauthorized_client":
        return False
    uri = body.get("error_uri")
    return body.get("error_description") == DEVICE_REVOKED_CODE or (
        isinstance(uri, str) and uri.endswith("#" + DEVICE_REVOKED_CODE)
    )


def _is_fatal(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    return any(isinstance(i, dict) and i.get("severity") == "fatal" for i in _issues(body))


def _as_outcome(body: Any) -> dict[str, Any] | None:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body
    return None


def _maybe_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
