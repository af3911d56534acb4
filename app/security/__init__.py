"""Keys and who may open the cache: OS keyring checks, PIN key slots, lockout and wipe.
Imports nothing from store, services or ui."""

from app.security._keyring import (
    INSECURE_ENV,
    TRUSTED_BACKENDS,
    MemoryKeyringBase,
    audit_head,
    check_backend,
    client_secret,
    memory_keyring,
    probe_keyring,
    set_audit_head,
    site_client_secret,
    store_client_secret,
    store_site_client_secret,
)
from app.security._profile import (
    CACHE_FILE,
    MIN_PIN_LENGTH,
    KdfParams,
    LockoutPolicy,
    Profile,
    ServerSettings,
    check_pin,
    check_user_id,
)

__all__ = [
    "CACHE_FILE",
    "INSECURE_ENV",
    "MIN_PIN_LENGTH",
    "TRUSTED_BACKENDS",
    "KdfParams",
    "LockoutPolicy",
    "MemoryKeyringBase",
    "Profile",
    "ServerSettings",
    "audit_head",
    "check_backend",
    "check_pin",
    "check_user_id",
    "client_secret",
    "memory_keyring",
    "probe_keyring",
    "set_audit_head",
    "site_client_secret",
    "store_client_secret",
    "store_site_client_secret",
]
