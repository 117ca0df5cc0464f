"""movedisk: oVirt's Move Disk Two Phase Commit, as a PostgreSQL package and a thin harness."""

__version__ = "0.1.0"
