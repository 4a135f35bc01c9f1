"""Transactions: owns the transaction records and runs the consensus protocol for every
money movement."""
