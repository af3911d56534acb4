"""OAuth 2.0 client credentials (SMART Backend Services style) and token-endpoint discovery.

The access token lives in memory only; the long-lived client secret is handed in by the caller
(from the OS keyring) and never written anywhere by sync. `TokenSource` is the seam for
another scheme later (a signed JWT client assertion, or a clinician sign-in in front): the
client only asks it for the form to post.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class TokenSource(Protocol):
    """Where access tokens come from: the token URL and the form a token request posts."""

    @property
    def token_url(self) -> str: ...

    def token_form(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """Form fields, and HTTP Basic credentials (or None) for one token request."""


@dataclass(frozen=True)
class ClientCredentials:
    """`grant_type=client_credentials` with a client secret (RFC 6749 section 4.4).

    The secret goes in HTTP Basic, which every OAuth server must accept (RFC 6749 2.3.1);
    `repr` hides it so it cannot reach a log line or a traceback by accident.
    """

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None

    def token_form(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return form, (self.client_id, self.client_secret)


SMART_CONFIGURATION = ".well-known/smart-configuration"
