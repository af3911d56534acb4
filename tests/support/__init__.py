"""Helpers shared by several test suites (fixtures stay in conftest files; test_*.py files hold
tests only and import nothing from each other)."""
