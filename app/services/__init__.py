"""Use cases (unlock, search, open a record, record an encounter, sync, policy) in plain
Python: no Qt widgets, no SQL outside app.store, no HTTP outside sync/."""
