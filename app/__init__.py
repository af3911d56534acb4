"""Kerbside: the tablet side. ui -> services -> store/security; nothing here imports sync
internals."""
