"""The encounter form's drafts: its own kept in the encrypted cache as it is typed, and earlier
ones (left by a crash, a lock or another form) offered back while the form is untouched.

Drafts are autosaved 1 s after a change and on hide, through the runner's one-worker DB pool,
so an autosave never races the save (which removes the draft in its own transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QWidget

from app.services import encounters
from app.services.session import Session
from app.times import clock_text, parse_instant, short_day_text
from app.ui.ops import Runner
from app.ui.use_cases import DraftsFound, discard_draft_op, drafts_found_op, save_draft_op
from app.ui.widgets import BigButton, label, set_role

log = logging.getLogger("kerbside.ui")

AUTOSAVE_DELAY_MS = 1000


class DraftKeeper(QObject):
    """Keeps the form's answers as its draft: `changed()` arms a 1 s autosave, `flush()` keeps
    them now. `read()` gives the answers (the JSON input shape) when they are kept; while
    `may_keep()` is false (saving, saved, correcting a refused record) nothing is kept.

    Signals: kept(str) with the draft id after COMMIT; not_kept() when the cache refused
    (the failure then goes to the runner's standard display, and the next change tries again).
    """

    kept = Signal(str)
    not_kept = Signal()

    def __init__(
        self,
        session: Session,
        runner: Runner,
        read: Callable[[], dict[str, Any]],
        may_keep: Callable[[], bool],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self._runner = runner
        self._read = read
        self._may_keep = may_keep
        self._owner = parent  # ops' callbacks are skipped once the form is gone
        self.draft_id: str | None = None
        self._dirty = False  # changed since the last autosave was queued
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)

    def changed(self) -> None:
        self._dirty = True
        self._timer.start()

    def stop(self) -> None:
        """No autosave for what was changed so far (it is being saved or thrown away)."""
        self._timer.stop()
        self._dirty = False

    def flush(self) -> None:
        """Autosave now if anything changed (the window calls this before locking)."""
        self._timer.stop()
        if not self._dirty or not self._may_keep():
            return
        self._dirty = False
        if self.draft_id is None:
            self.draft_id = encounters.new_draft_id()

        def failed(exc: BaseException) -> None:
            self._dirty = True  # try again on the next change
            self.not_kept.emit()
            self._runner.report(exc)

        log.debug("autosaving draft %s", self.draft_id)
        save_draft_op(self._owner, self._session, self.draft_id, self._read()).on_success(
            self.kept.emit
        ).on_failure(failed).run(self._runner)

    def discard(self) -> None:
        """Stop keeping, and remove the draft kept so far."""
        self.stop()
        draft_id, self.draft_id = self.draft_id, None
        if draft_id is not None:
            discard_draft_op(self._owner, self._session, draft_id).run(self._runner)


class DraftOffer(QFrame):
    """A notice above the form offering back the newest draft found, while the form is
    untouched: Resume continues it in this form (its id is kept, so it is updated), "Discard
    it" removes it (the next older one is offered then). `resume_id` (from "Today's
    encounters") is resumed as soon as it is found.

    Signal: resumed(encounters.Draft), the draft to continue.
    """

    resumed = Signal(object)

    def __init__(
        self,
        keeper: DraftKeeper,
        session: Session,
        runner: Runner,
        *,
        resume_id: str | None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._keeper = keeper
        self._session = session
        self._runner = runner
        self._resume_id = resume_id
        self._drafts: list[encounters.Draft] = []
        self.open = True  # the form is untouched: a found draft may still be resumed
        set_role(self, "notice")
        self.setAccessibleName("Unsaved encounter found")
        row = QHBoxLayout(self)
        row.setContentsMargins(20, 8, 20, 8)
        self.text = label("", None)
        row.addWidget(self.text, 1)
        self.resume_button = BigButton(
            "Resume", role="primary", accessible_name="Resume the unsaved encounter"
        )
        self.resume_button.clicked.connect(self.resume)
        self.drop_button = BigButton(
            "Discard it", role="toggle", accessible_name="Discard the unsaved encounter"
        )
        self.drop_button.clicked.connect(self._drop)
        row.addWidget(self.resume_button)
        row.addWidget(self.drop_button)
        self.hide()

    def drafts(self) -> list[encounters.Draft]:
        return list(self._drafts)

    def close_offer(self) -> None:
        """The officer has started on this form (or resumed a draft): offer nothing more."""
        self.open = False
        self.hide()

    def look(self) -> None:
        """Look for drafts other than the form's own, then offer the newest (or resume the
        one asked for)."""
        drafts_found_op(self, self._session).on_success(self._found).run(self._runner)

    def _found(self, found: DraftsFound) -> None:
        drafts = found.drafts
        self._drafts = [d for d in drafts if d.draft_id != self._keeper.draft_id]
        wanted = [d for d in self._drafts if d.draft_id == self._resume_id]
        if wanted and self.open:
            self._drafts.remove(wanted[0])
            self._drafts.insert(0, wanted[0])
            self._resume_id = None
            self.resume()
            return
        if not self._drafts or not self.open:
            return
        newest = self._drafts[0]
        when = parse_instant(newest.updated_at, naive="reject")
        more = len(self._drafts) - 1
        text = f"An unsaved encounter about {found.people[newest.draft_id]}"
        if when is not None:
            text += f", last changed {clock_text(when)} {short_day_text(when)}"
        if more:
            text += f" (and {more} older)"
        self.text.setText(text + ".")
        self.show()

    def resume(self) -> None:
        """Continue the newest found draft in the form."""
        if not self._drafts:
            return
        draft = self._drafts.pop(0)
        self._keeper.draft_id = draft.draft_id
        self.close_offer()
        self.resumed.emit(draft)

    def _drop(self) -> None:
        if not self._drafts:
            self.hide()
            return
        draft = self._drafts.pop(0)
        discard_draft_op(self, self._session, draft.draft_id).on_success(
            lambda _r: self.look()
        ).run(self._runner)
        self.hide()
