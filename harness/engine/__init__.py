"""The engine side of a disk move: the commands (move, end, remove, recover, cleanup) that
sequence the database's phase functions and the storage agent's tasks.

- :mod:`.states`: the stages of a move and the pure decision ``next_action``;
- :mod:`.store`: the stored functions, one typed method each (no SQL text here);
- :mod:`.move`: start and run a move to its end; :mod:`.end`: the three ends;
- :mod:`.remove`, :mod:`.cleanup`, :mod:`.recover`: leftovers, pending deletions, stale moves;
- :mod:`.retry`: the backoff policy; :mod:`.events`: what the engine reports (it never prints);
- :mod:`.crashpoints`: the test-only switch that kills the process at a named point;
- :mod:`.owner`: who holds a lease, and whether that process is alive.
"""
