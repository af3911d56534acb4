"""Find a person: one big search box, results as you type, filters, "did you mean".

Search runs on a worker (`use_cases.search_op`, its own connection to the cache), never on
the GUI thread, so typing stays fluent whatever the cache's size. Keystrokes are coalesced:
the debounce runs one search after a pause, and only the newest query's answer is shown (a
`Latest` ticket per search; an answer to an earlier query, or one that arrives after the view
was cleared or locked, is dropped, and a search already superseded when a worker picks it up
does no work). Until the answer comes the previous results stay, so a tap during the wait
opens the person tapped; when the answer arrives the highlight follows the record pane
(`results_shown`), never silently moving to someone else (hazard H1).

Result rows are painted by a delegate so they stay cheap to rebuild on every keystroke; each
row is at least 88 px tall (a gloved finger) and reads without colour: alert badges carry an
icon shape and text as well as their colour.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QKeyEvent, QPainter, QPen
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QListView,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.times import uk_date
from app.ui import theme
from app.ui.ops import Latest, Runner, Ticket
from app.ui.use_cases import Found, SearchAsked, load_search_words_op, search_op, search_words
from app.ui.widgets import BigButton, ToggleGroup, label, paint_alert_icon

log = logging.getLogger("kerbside.ui")

DEBOUNCE_MS = 120
RESULT_LIMIT = 20
WEAK_TAG = "Weak match"
NO_CLOSE_MATCH = "No close match. The nearest are below: check name, date of birth and sex."
EMPTY_HINT = "Type a name, nickname, date of birth, age, NHS number or postcode."
# (value, text), as every choice widget takes them; None is "no filter".
SEX_OPTIONS: tuple[tuple[object, str], ...] = (
    (None, "Any sex"),
    ("female", "Female"),
    ("male", "Male"),
)
AGE_OPTIONS: tuple[tuple[object, str], ...] = (
    (None, "Any age"),
    ((0, 17), "Under 18"),
    ((18, 35), "18–35"),
    ((36, 60), "36–60"),
    ((61, 130), "Over 60"),
)
HitRole = Qt.ItemDataRole.UserRole + 1


def format_dob(birth_date: str | None) -> str:
    """FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) as people in the UK write it."""
    return uk_date(birth_date, unknown="DOB unknown")


def format_nhs(nhs_number: str | None, label: str = "NHS") -> str:
    """ "NHS 943 476 5870", or "No NHS number" (never "NHS No NHS number")."""
    if not nhs_number:
        return "No NHS number"
    from app.nhs_number import format_nhs_number

    return f"{label} {format_nhs_number(nhs_number)}"


def sex_text(gender: str | None) -> str:
    """Sex as a result row shows it: a second check on who this is, on every row."""
    return {"female": "Female", "male": "Male", "other": "Other"}.get(
        gender or "", "Sex not recorded"
    )


def is_weak(hit: Any) -> bool:
    """A result that matches too little of what was typed to be trusted: labelled, never
    preselected, never opened by Enter (hazard H7, weak match opened)."""
    from app.services.search import WEAK_SCORE

    return float(getattr(hit, "score", 1.0)) < WEAK_SCORE


def source_names(hit: Any, labels: dict[str, str]) -> list[str]:
    """The Trusts that hold records of this person, home first, as officers know them (the
    profile's display names); none with one source (`labels` empty): nothing to tell apart."""
    if not labels:
        return []
    return [labels.get(name, name) for name in getattr(hit, "sources", ())]


LOOKED_UP_TAG = "Looked up online"


def hit_tags(hit: Any) -> list[str]:
    """The tags on a result's own line: a weak match (hazard H7), a person an online look-up
    fetched (hazard H18: one opening's copy, erased at its time, not the cohort's)."""
    tags = [WEAK_TAG] if is_weak(hit) else []
    if getattr(hit, "looked_up", False):
        tags.append(LOOKED_UP_TAG)
    return tags


def hit_summary(hit: Any, labels: dict[str, str] | None = None) -> str:
    """The spoken form of a result row (accessible text)."""
    parts = ["".join(f"{tag}: " for tag in hit_tags(hit)) + hit.display_name]
    parts.append(sex_text(hit.gender))
    if getattr(hit, "known_as", None):
        parts.append(f"known as {hit.known_as}")
    if hit.age is not None:
        parts.append(f"age {hit.age}")
    parts.append(f"born {format_dob(hit.birth_date)}")
    if hit.postcode:
        parts.append(f"postcode {hit.postcode}")
    parts.append(format_nhs(hit.nhs_number, label="NHS number"))
    if hit.alerts:
        parts.append("alerts: " + ", ".join(dict.fromkeys(a.label for a in hit.alerts)))
    trusts = source_names(hit, labels or {})
    if trusts:
        parts.append("known to " + " and ".join(trusts))
    return ", ".join(parts)


def _badges(alerts: Any) -> list[Any]:
    """One badge per alert however many Trusts hold it (each alert names its source; the
    record lists them per Trust)."""
    seen: dict[tuple[str, str], Any] = {}
    for alert in alerts:
        seen.setdefault((alert.kind, alert.label), alert)
    return list(seen.values())


class HitModel(QAbstractListModel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hits: list[Any] = []
        self.labels: dict[str, str] = {}  # source name -> Trust display name (several sources)

    def set_hits(self, hits: list[Any], labels: dict[str, str] | None = None) -> None:
        self.beginResetModel()
        self.hits = list(hits)
        self.labels = dict(labels or {})
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.hits)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self.hits):
            return None
        hit = self.hits[index.row()]
        if role == HitRole:
            return hit
        if role in (Qt.ItemDataRole.AccessibleTextRole, Qt.ItemDataRole.DisplayRole):
            return hit_summary(hit, self.labels)
        return None


class HitDelegate(QStyledItemDelegate):
    """Paints a result row: name and known-as, age and DOB, postcode and NHS number, badges.

    Lines wrap to the width: a wide list puts the NHS number beside age, DOB and postcode; a
    narrow one gives it its own line rather than cutting anything off.
    """

    PAD = 14
    BADGE_H = 36
    GAP = 4

    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self._view = view

    def _fonts(self, base: QFont) -> tuple[QFont, QFont, QFont]:
        name = QFont(base)
        name.setPointSize(theme.scaled_pt(19))
        name.setBold(True)
        body = QFont(base)
        body.setPointSize(theme.scaled_pt(theme.BODY_PT))
        badge = QFont(base)
        badge.setPointSize(theme.scaled_pt(theme.BODY_PT))
        badge.setBold(True)
        return name, body, badge

    @staticmethod
    def _facts(hit: Any) -> str:
        parts = [
            sex_text(hit.gender),
            f"{hit.age} y" if hit.age is not None else None,
            format_dob(hit.birth_date),
            hit.postcode,
        ]
        return "  ·  ".join(p for p in parts if p)

    def _lines(self, hit: Any, body_fm: QFontMetrics, width: int) -> list[tuple[str, bool]]:
        """(text, muted) lines under the name; with several sources, the Trusts that know
        the person (one line, or one a Trust when they do not fit)."""
        facts = self._facts(hit)
        nhs = format_nhs(hit.nhs_number)
        together = f"{facts}  ·  {nhs}"
        if body_fm.horizontalAdvance(together) <= width:
            lines = [(together, False)]
        else:
            lines = [(facts, False), (nhs, True)]
        model = self._view.model()
        trusts = source_names(hit, getattr(model, "labels", {}))
        if trusts:
            one = "Known to " + " and ".join(trusts)
            if body_fm.horizontalAdvance(one) <= width:
                lines.append((one, True))
            else:
                lines.append((f"Known to {trusts[0]}", True))
                lines.extend((f"and {t}", True) for t in trusts[1:])
        return lines

    def _inner_width(self) -> int:
        return max(200, self._view.viewport().width() - 2 * self.PAD)

    def _badge_rows(self, hit: Any, fm: QFontMetrics, width: int) -> list[list[Any]]:
        rows: list[list[Any]] = [[]]
        x = 0
        for alert in _badges(hit.alerts):
            w = self.BADGE_H + fm.horizontalAdvance(alert.label) + 16
            if rows[-1] and x + w > width:
                rows.append([])
                x = 0
            rows[-1].append(alert)
            x += w + 8
        return rows if hit.alerts else []

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        hit = index.data(HitRole)
        name, body, badge = self._fonts(option.font)
        width = self._inner_width()
        height = self.PAD * 2 + QFontMetrics(name).height()
        if hit is not None:
            body_fm = QFontMetrics(body)
            height += len(self._lines(hit, body_fm, width)) * (body_fm.height() + self.GAP)
            rows = self._badge_rows(hit, QFontMetrics(badge), width)
            height += len(rows) * (self.BADGE_H + 6) + (6 if rows else 0)
            if hit_tags(hit):
                height += self.BADGE_H + 6 + (0 if rows else 6)
        return QSize(self._view.viewport().width(), max(height, theme.ROW_HEIGHT_PX))

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        hit = index.data(HitRole)
        if hit is None:
            return
        pal = theme.current()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRect(option.rect)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.fillRect(rect, QColor(pal.selection if selected else pal.surface))
        painter.setPen(QPen(QColor(pal.surface_alt), 2))
        painter.drawLine(rect.bottomLeft(), rect.bottomRight())
        if selected:
            painter.fillRect(QRect(rect.left(), rect.top(), 6, rect.height()), QColor(pal.primary))

        name_font, body_font, badge_font = self._fonts(option.font)
        inner = rect.adjusted(self.PAD, self.PAD, -self.PAD, -self.PAD)
        name_fm = QFontMetrics(name_font)
        body_fm = QFontMetrics(body_font)
        left = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

        painter.setFont(name_font)
        painter.setPen(QColor(pal.text))
        name_text = hit.display_name
        if getattr(hit, "known_as", None):
            name_text += f"  “{hit.known_as}”"
        name_room = inner.width()
        painter.drawText(
            QRect(inner.left(), inner.top(), name_room, name_fm.height()),
            left,
            name_fm.elidedText(name_text, Qt.TextElideMode.ElideRight, name_room),
        )
        y = inner.top() + name_fm.height() + self.GAP
        painter.setFont(body_font)
        for text, muted in self._lines(hit, body_fm, inner.width()):
            painter.setPen(QColor(pal.muted if muted else pal.text))
            painter.drawText(
                QRect(inner.left(), y, inner.width(), body_fm.height()),
                left,
                body_fm.elidedText(text, Qt.TextElideMode.ElideRight, inner.width()),
            )
            y += body_fm.height() + self.GAP
        y += 6
        tags = hit_tags(hit)
        if tags:  # on their own line: beside the name they cut long names short
            tag_fm = QFontMetrics(badge_font)
            painter.setFont(badge_font)
            painter.setPen(QPen(QColor(pal.notice_fg), 2))
            painter.setBrush(QColor(pal.notice_bg))
            x = float(inner.left())
            for tag in tags:
                box = QRectF(x, y, tag_fm.horizontalAdvance(tag) + 24, self.BADGE_H)
                painter.drawRoundedRect(box, 8, 8)
                painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), tag)
                x += box.width() + 8
            y += self.BADGE_H + 6
        for row in self._badge_rows(hit, QFontMetrics(badge_font), inner.width()):
            self._paint_badges(painter, inner.left(), y, inner.right(), row, badge_font)
            y += self.BADGE_H + 6
        painter.restore()

    def _paint_badges(
        self, painter: QPainter, x: int, y: int, right: int, alerts: Any, font: QFont
    ) -> None:
        pal = theme.current()
        fm = QFontMetrics(font)
        painter.setFont(font)
        h = self.BADGE_H
        for n, alert in enumerate(alerts):
            colours = pal.alert(alert.kind)
            text = alert.label
            width = h + fm.horizontalAdvance(text) + 16
            if x + width > right:
                more = f"+{len(alerts) - n} more"
                painter.setPen(QColor(pal.text))
                painter.drawText(
                    QRect(x, y, right - x, h),
                    int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                    more,
                )
                return
            box = QRectF(x, y, width, h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(colours.bg))
            painter.drawRoundedRect(box, 8, 8)
            fg = QColor(colours.fg)
            paint_alert_icon(painter, QRectF(x + 6, y + 5, h - 10, h - 10), alert.kind, fg)
            painter.setPen(fg)
            painter.drawText(
                QRect(x + h, y, width - h - 8, h),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                text,
            )
            x += width + 8


class _ResultList(QListView):
    activated_row = Signal(int)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.activated_row.emit(self.currentIndex().row())
            return
        super().keyPressEvent(event)


class _SearchBox(QLineEdit):
    down_pressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Down:
            self.down_pressed.emit()
            return
        super().keyPressEvent(event)


class SearchView(QWidget):
    """The Find pane. Give it a session with `set_session`; it emits the chosen patient id."""

    # (Patient id, sid of its source): the result's `ref`. An id means something only within
    # its source, so whoever is opened is named by both (issue 14).
    patient_chosen = Signal(str, int)
    unknown_person_requested = Signal()
    query_edited = Signal()  # the officer changed the query or a filter: a different search
    lookup_requested = Signal(str)  # "Look up online" at this source (its profile name)
    results_shown = Signal()  # a search's answer is on screen (the window re-applies H1)

    def __init__(self, runner: Runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Find a person")
        self._runner = runner
        self._words: Any = None  # the open cache's vocabulary, shared by the searches
        self._session: Any = None
        self._audited_query = ""  # a search shown again (a filter toggled) is one audit entry
        self.last_search_ms: float | None = None
        self._searches = Latest()  # only the newest search's answer is shown
        self._awaited: Ticket | None = None  # the search whose answer is still to come
        self._open_top_for: Ticket | None = None  # Enter pressed before this answer came
        # The query the shown results answer: a re-run of the same one (after a sync) keeps
        # the highlighted person rather than moving the highlight to whoever is now first.
        self._shown_query: tuple[str, object, object] | None = None

        col = QVBoxLayout(self)
        col.setContentsMargins(16, 16, 16, 12)
        col.setSpacing(10)

        self.box = _SearchBox()
        self.box.setProperty("role", "search")
        self.box.setPlaceholderText("Search: name, DOB, NHS number, postcode…")
        self.box.setAccessibleName("Search for a person")
        self.box.setClearButtonEnabled(True)
        for clear in self.box.findChildren(QToolButton):  # Qt's built-in clear button
            clear.setAccessibleName("Clear the search")
        self.box.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.box.textChanged.connect(self._schedule)
        self.box.textChanged.connect(lambda _t: self.query_edited.emit())
        self.box.textChanged.connect(lambda _t: self._offer_lookup(False))  # for this answer only
        self.box.returnPressed.connect(self._open_first)
        self.box.down_pressed.connect(self._focus_results)
        col.addWidget(self.box)

        tools = QHBoxLayout()
        tools.setSpacing(8)
        self.filters_button = BigButton(
            "Filters", role="bar", accessible_name="Show sex and age filters"
        )
        self.filters_button.setCheckable(True)
        self.filters_button.toggled.connect(self._show_filters)
        tools.addWidget(self.filters_button, 1)
        self.unknown = BigButton(
            "+ Unknown person", role="bar", accessible_name="Record an unknown person"
        )
        self.unknown.setToolTip("Start a provisional record for someone who cannot be identified")
        self.unknown.clicked.connect(self.unknown_person_requested)
        tools.addWidget(self.unknown, 1)
        col.addLayout(tools)

        self.filters = QFrame()
        filters = QVBoxLayout(self.filters)
        filters.setContentsMargins(0, 0, 0, 0)
        filters.setSpacing(6)
        self.sex = ToggleGroup(SEX_OPTIONS, accessible_name="Sex filter")
        self.sex.changed.connect(lambda _v: self._filters_changed())
        self.age = ToggleGroup(AGE_OPTIONS, accessible_name="Age filter", columns=3)
        self.age.changed.connect(lambda _v: self._filters_changed())
        filters.addWidget(self.sex)
        filters.addWidget(self.age)
        self.filters.hide()
        col.addWidget(self.filters)

        self.notice = label("", "notice")
        self.notice.setAccessibleName("Search notice")
        self.notice.hide()
        col.addWidget(self.notice)
        self.did_you_mean = BigButton("", role="chip", accessible_name="Did you mean")
        self.did_you_mean.hide()
        self.did_you_mean.clicked.connect(self._apply_suggestion)
        col.addWidget(self.did_you_mean, 0, Qt.AlignmentFlag.AlignLeft)

        self._states = QStackedWidget()
        self.hint = label(EMPTY_HINT, "hint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setAccessibleName("Search hint")
        self.no_results = label("", "hint")
        self.no_results.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.no_results.setAccessibleName("No results")
        self.model = HitModel(self)
        self.results = _ResultList()
        self.results.setAccessibleName("Search results")
        self.results.setModel(self.model)
        self.results.setItemDelegate(HitDelegate(self.results))
        self.results.setUniformItemSizes(False)
        self.results.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.results.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.results.clicked.connect(lambda idx: self._choose(idx.row()))
        self.results.activated_row.connect(self._choose)
        for page in (self.hint, self.results, self.no_results):
            self._states.addWidget(page)
        col.addWidget(self._states, 1)
        col.addWidget(self._build_lookup_row())

        self.locked_panel = QFrame()
        self.locked_panel.setProperty("role", "error")
        self.locked_panel.setAccessibleName("Patient data locked")
        self.locked_text = label("", None)
        lp = QVBoxLayout(self.locked_panel)
        lp.addWidget(self.locked_text)
        self.locked_panel.hide()
        col.insertWidget(0, self.locked_panel)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._run_search)
        self._update_filter_label()

    # -- online look-up (issue 14 slice 7) ------------------------------------------------
    def _build_lookup_row(self) -> QWidget:
        """ "Look up online" per source, under results that hold nobody suitable (none, or
        none close); a source out of reach shows its button disabled and says why."""
        self.lookup_row = QFrame()
        self._lookup_col = QVBoxLayout(self.lookup_row)
        self._lookup_col.setContentsMargins(0, 0, 0, 0)
        self._lookup_col.setSpacing(6)
        self._lookup_buttons: list[BigButton] = []
        self.lookup_row.hide()
        return self.lookup_row

    def set_lookup_sources(self, sources: list[tuple[str, str, str | None]]) -> None:
        """(profile name, Trust, why it cannot be asked now or None) of each source a
        look-up may ask, home first."""
        while self._lookup_col.count():
            item = self._lookup_col.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.setParent(None)
                widget.deleteLater()
        self._lookup_buttons = []
        for name, trust, why in sources:
            button = BigButton(
                f"Look up online at {trust}",
                role="bar",
                accessible_name=f"Look up online at {trust}",
            )
            button.setEnabled(why is None)
            button.setAccessibleDescription(why or "")
            button.clicked.connect(lambda _=False, n=name: self.lookup_requested.emit(n))
            self._lookup_col.addWidget(button)
            self._lookup_buttons.append(button)
            if why is not None:
                reason = label(why, "muted")
                reason.setAccessibleName(f"Look-up unavailable: {why}")
                self._lookup_col.addWidget(reason)

    def lookup_buttons(self) -> list[BigButton]:
        return list(self._lookup_buttons)

    def _offer_lookup(self, shown: bool) -> None:
        self.lookup_row.setVisible(shown and bool(self._lookup_buttons))

    # -- session -----------------------------------------------------------------------------
    def set_session(self, session: Any) -> None:
        """Search this session's cache (None: nothing to search; the app is locked). The
        vocabulary loads on a worker now, so the first search after unlock does not wait."""
        self._session = session
        self._words = None
        self.clear()
        if session is not None:
            self._words = search_words()
            # Only a head start: the first search loads what is missing (bugs still show).
            load_search_words_op(self, session, self._words).on_failure(
                lambda exc: self._runner.report(exc, known=False)
            ).run(self._runner)

    def refresh_index(self) -> None:
        """After a sync or import changed the cache: search again (a search reloads the
        vocabulary when the index changed it)."""
        if self.box.text().strip():
            self._run_search()

    def set_locked(self, message: str | None) -> None:
        """Lock patient data (cache expired) with a reason, or unlock it (None)."""
        self.locked_text.setText(message or "")
        self.locked_panel.setVisible(bool(message))
        for w in (self.box, self.filters_button, self.filters, self.results):
            w.setEnabled(not message)
        if message:
            self.clear()

    def clear(self) -> None:
        """Hide every result and the query (lock, user change); drop any answer to come."""
        self._timer.stop()
        self._searches.drop()
        self._awaited = None
        self._open_top_for = None
        self._audited_query = ""
        self.box.blockSignals(True)
        self.box.clear()
        self.box.blockSignals(False)
        self.model.set_hits([])
        self._shown_query = None
        self.notice.hide()
        self.did_you_mean.hide()
        self._states.setCurrentWidget(self.hint)
        self._offer_lookup(False)

    def focus_search(self) -> None:
        self.box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.box.selectAll()

    # -- filters -----------------------------------------------------------------------------
    def _show_filters(self, shown: bool) -> None:
        self.filters.setVisible(shown)
        self._update_filter_label()

    def _filters_changed(self) -> None:
        self._update_filter_label()
        self.query_edited.emit()
        self._schedule(now=True)

    def _update_filter_label(self) -> None:
        active = [
            text
            for group, options in ((self.sex, SEX_OPTIONS), (self.age, AGE_OPTIONS))
            for value, text in options
            if value is not None and value == group.value()
        ]
        arrow = "▴" if self.filters.isVisible() else "▾"
        self.filters_button.setText(
            f"Filters: {', '.join(active)} {arrow}" if active else f"Filters {arrow}"
        )
        self.filters_button.setAccessibleName(
            "Filters: " + (", ".join(active) if active else "none")
        )

    def clear_filters(self) -> None:
        self.sex.set_value(None)
        self.age.set_value(None)
        self._update_filter_label()

    # -- searching ---------------------------------------------------------------------------
    def _schedule(self, _text: str = "", *, now: bool = False) -> None:
        if now:
            self._timer.stop()
            self._run_search()
        else:
            self._timer.start()

    def search_now(self) -> None:
        """Start the pending search now (Enter, a filter, the suggestion); the answer comes
        on the main thread later (`is_searching` until then)."""
        self._timer.stop()
        self._run_search()

    def is_searching(self) -> bool:
        """A search is due (the debounce runs) or its answer has not come yet."""
        return self._timer.isActive() or self._awaited is not None

    def answered_query(self) -> str | None:
        """The query the results on screen answer (None: no results shown)."""
        return self._shown_query[0] if self._shown_query is not None else None

    def _run_search(self) -> None:
        query = self.box.text().strip()
        if not query or self._session is None or self._words is None:
            self._searches.drop()
            self._awaited = None
            self._open_top_for = None
            self.model.set_hits([])
            self._shown_query = None
            self.notice.hide()
            self.did_you_mean.hide()
            self._states.setCurrentWidget(self.hint)
            return
        asked = SearchAsked(query, self.sex.value(), self.age.value())
        ticket = self._searches.next()
        self._awaited = ticket
        search_op(
            self,
            self._session,
            self._words,
            asked,
            ticket,
            limit=RESULT_LIMIT,
            audit=query != self._audited_query,
        ).for_request(ticket).on_success(self._answered).on_failure(self._search_failed).run(
            self._runner
        )

    def _search_failed(self, exc: BaseException) -> None:
        """Known errors shown as one line (no audit entry, no results on screen); bugs go
        to the crash handler. The results shown before stay, unless the cache has expired
        (then the screen locks, with the reason)."""
        from app.errors import CacheExpired

        self._awaited = None
        self._open_top_for = None
        if isinstance(exc, CacheExpired):
            self.set_locked(str(exc))
            return
        self._runner.report(exc)

    def _answered(self, found: Found | None) -> None:
        """The newest search's answer (`for_request` dropped any older one)."""
        if found is None:  # skipped on the worker as superseded: never delivered, for_request
            return
        ticket, self._awaited = self._awaited, None
        open_top = ticket is not None and self._open_top_for == ticket
        self._open_top_for = None
        self.last_search_ms = found.search_ms
        if found.audited:
            self._audited_query = found.asked.query
        self._show(found)
        if open_top:
            self._open_highlighted()

    def _show(self, found: Found) -> None:
        result = found.result
        asked = (found.asked.query, found.asked.sex, found.asked.age_range)
        rerun = asked == self._shown_query
        kept = self.highlighted_ref() if rerun else None
        self._shown_query = asked
        self.model.set_hits(result.hits, found.labels)
        notices = [result.notice] if result.notice else []
        if result.hits and is_weak(result.hits[0]):
            notices.insert(0, NO_CLOSE_MATCH)
        self.notice.setText("\n".join(notices))
        self.notice.setVisible(bool(notices))
        if result.did_you_mean:
            self.did_you_mean.setText(f"Did you mean “{result.did_you_mean}”?")
            self.did_you_mean.setAccessibleName(f"Did you mean {result.did_you_mean}")
            self.did_you_mean.setProperty("suggestion", result.did_you_mean)
            self.did_you_mean.show()
        else:
            self.did_you_mean.hide()
        if result.hits:
            self._states.setCurrentWidget(self.results)
            if rerun:
                # Same person or none: never a silent swap. The person, not the row: their
                # result may now be merged with another Trust's record, or no longer be.
                self.highlight(kept[1] if kept else None, source=kept[0] if kept else None)
            elif is_weak(result.hits[0]):
                self.highlight(None)  # nothing close: the officer picks, Enter opens nobody
                self.results.scrollToTop()
            else:
                self.results.setCurrentIndex(self.model.index(0))
                self.results.scrollToTop()
        else:
            filtered = found.asked.sex is not None or found.asked.age_range is not None
            self.no_results.setText(
                "No one in this cache matches."
                + (" Try clearing the sex or age filter." if filtered else "")
                + "\nCheck the spelling, try a nickname or date of birth, or record an "
                "unknown person."
            )
            self._states.setCurrentWidget(self.no_results)
        self._offer_lookup(not result.hits or is_weak(result.hits[0]))
        self.results_shown.emit()

    def _apply_suggestion(self) -> None:
        suggestion = self.did_you_mean.property("suggestion")
        if suggestion:
            self.box.setText(str(suggestion))
            self.search_now()

    def _focus_results(self) -> None:
        if self.model.rowCount():
            self.results.setFocus()
            if not self.results.currentIndex().isValid():
                self.results.setCurrentIndex(self.model.index(0))

    def _open_first(self) -> None:
        """Enter in the box opens the highlighted result: the top one when it is a close
        match, nobody when nothing is close (a weak match is only ever opened by a tap).
        Pressed before the answer to what was typed has come, it opens from that answer
        (unless the officer types again or taps someone first)."""
        if self._timer.isActive():
            self.search_now()
        if self._awaited is not None:
            self._open_top_for = self._awaited
            return
        self._open_highlighted()

    def _open_highlighted(self) -> None:
        index = self.results.currentIndex()
        if index.isValid() and not is_weak(self.model.hits[index.row()]):
            self._choose(index.row())

    def _choose(self, row: int) -> None:
        self._open_top_for = None  # a tap is the newer choice: an earlier Enter is void
        if 0 <= row < len(self.model.hits):
            self.results.setCurrentIndex(self.model.index(row))
            hit = self.model.hits[row]
            self.patient_chosen.emit(hit.id, hit.sid)

    def hits(self) -> list[Any]:
        return list(self.model.hits)

    def highlighted_id(self) -> str | None:
        """The patient id of the highlighted result, if a result is highlighted."""
        index = self.results.currentIndex()
        if not index.isValid() or index.row() >= len(self.model.hits):
            return None
        return str(self.model.hits[index.row()].id)

    def highlighted_ref(self) -> tuple[int, str] | None:
        """(sid, id) of the highlighted result (`PatientHit.ref`), if one is highlighted."""
        index = self.results.currentIndex()
        if not index.isValid() or index.row() >= len(self.model.hits):
            return None
        return tuple(self.model.hits[index.row()].ref)  # type: ignore[return-value]

    def _row_of(self, patient_id: str | None, source: int | None) -> int | None:
        """The row of the person whose Patient (`source`'s `patient_id`) this is: any of a
        merged person's members; `source` None: the result whose id it is (the home
        source's, as before several sources)."""
        if patient_id is None:
            return None
        for i, hit in enumerate(self.model.hits):
            if hit.is_person(source, patient_id) if source is not None else hit.id == patient_id:
                return i
        return None

    def highlight(self, patient_id: str | None, *, source: int | None = None) -> None:
        """Highlight this person's row, or no row when they are not in the results."""
        row = self._row_of(patient_id, source)
        if row is None:
            self.results.selectionModel().clear()
            self.results.setCurrentIndex(QModelIndex())
        else:
            self.results.setCurrentIndex(self.model.index(row))

    def hit_by_id(self, patient_id: str, source: int | None = None) -> Any:
        """The result of this person (`source`'s Patient `patient_id`; see `highlight`)."""
        row = self._row_of(patient_id, source)
        return self.model.hits[row] if row is not None else None
