"""Validator: one of N independent voters on every transaction; each keeps its own view of risk."""
