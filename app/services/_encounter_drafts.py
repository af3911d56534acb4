"""Encounter drafts: the form autosaves its half-filled answers (the JSON input shape) so a
crash or a lock loses nothing; saving the record removes its draft in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.errors import InvalidInput
from app.services._encounter_input import KIND
from app.services.session import Session


@dataclass(frozen=True, slots=True)
class Draft:
    draft_id: str
    updated_at: str  # UTC instant
    data: dict[str, Any] = field(default_factory=dict)  # partial JSON input shape


def new_draft_id() -> str:
    return str(uuid.uuid4())


def save_draft(session: Session, draft_id: str, partial: Mapping[str, Any]) -> None:
    """Autosave a half-filled form (the JSON input shape; anything may be missing)."""
    if not isinstance(draft_id, str) or not 0 < len(draft_id) <= 64:
        raise InvalidInput("a draft id is 1-64 characters", field="draft_id")
    if not isinstance(partial, Mapping):
        raise InvalidInput("a draft is an object of form fields", field="draft")
    body = orjson.dumps(dict(partial), option=orjson.OPT_UTC_Z)
    session.store.save_draft(draft_id, KIND, session.user_id, body)


def load_drafts(session: Session) -> list[Draft]:
    """This user's encounter drafts, most recently saved first."""
    drafts = [
        Draft(draft_id, updated_at, orjson.loads(body))
        for draft_id, kind, _, body, updated_at in session.store.drafts(session.user_id)
        if kind == KIND
    ]
    return sorted(drafts, key=lambda d: d.updated_at, reverse=True)


def discard_draft(session: Session, draft_id: str) -> None:
    session.store.delete_draft(draft_id)
