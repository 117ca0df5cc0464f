"""The storage agent: a VDSM-style client and the simulator behind it."""
