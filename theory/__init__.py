"""Symbolic derivations (sympy) of rpd's staleness theory."""
