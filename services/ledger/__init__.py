"""Ledger: owns double-entry postings, balances and the outbox that feeds the Kafka mirror."""
