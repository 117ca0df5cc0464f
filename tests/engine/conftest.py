"""The engine tests use the shared ``seeded_root``, ``agent_proc`` and ``world`` fixtures of
tests/conftest.py (built by tests/worlds.py)."""
