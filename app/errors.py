"""Errors the app raises on purpose, and their one-line texts.

    KerbsideError                 known problems: shown as one line, never a traceback
     +-- StoreUnavailable         disk full, I/O error, locked or not a cache at all
     +-- SchemaTooNew             written by a newer Kerbside
     +-- UnlockFailed             wrong PIN (or no such user); carries the retry delay
     |    +-- LockedOut           too many failures: wait `retry_after_s`
     +-- CacheWiped               too many failures or revoked: the cache is gone
     +-- KeyringRefused           the OS keyring is missing, insecure or changed
     +-- ProfileError             profile missing, already exists, unknown user...
     |    +-- ProfileTampered     profile.json fails its MAC or was rolled back to an old copy
     +-- InvalidInput             bad user input: says which field and why
     +-- CacheExpired             not synced within its time-to-live: patient data locked
          +-- ClockBehind         the clock reads earlier than the trusted time seen

Text never holds patient data: messages name fields and reasons, never values.
Anything else (TypeError, a broken constraint of ours) is a bug and reaches the crash handler.
"""

from __future__ import annotations


class KerbsideError(Exception):
    """A known problem with a message safe to show to an officer or print on a terminal."""


class StoreUnavailable(KerbsideError):
    pass


class SchemaTooNew(KerbsideError):
    pass


class UnlockFailed(KerbsideError):
    def __init__(
        self,
        message: str,
        *,
        failures: int = 0,
        retry_after_s: float = 0.0,
        attempts_left: int | None = None,
    ) -> None:
        super().__init__(message)
        self.failures = failures
        self.retry_after_s = retry_after_s
        self.attempts_left = attempts_left


class LockedOut(UnlockFailed):
    pass


class CacheWiped(KerbsideError):
    pass


class KeyringRefused(KerbsideError):
    pass


class ProfileError(KerbsideError):
    pass


class ProfileTampered(ProfileError):
    """profile.json was edited outside Kerbside or replaced by an older copy: the settings and
    counters that guard the cache cannot be trusted, so it stays closed."""


class InvalidInput(KerbsideError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CacheExpired(KerbsideError):
    pass


class ClockBehind(CacheExpired):
    """The device clock reads earlier than the latest trusted time the cache has seen: someone
    set it back (to stretch the cache's lifetime) or it drifted; patient data stays locked."""


class IndexIncomplete(KerbsideError):
    """The cache is part-way through a bulk load: its search index is not built yet, so a
    search would miss people. Search refuses until the load (sync or import) finishes."""
