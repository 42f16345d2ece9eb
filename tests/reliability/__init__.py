"""Reliability and security checks (S1-S16, O12-O14 of RELIABILITY.md): faults, fuzzing,
overload, soak and endpoint authentication, on real servers over loopback."""
