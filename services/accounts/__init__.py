"""Accounts: owns accounts (owner, currency, status, limits). Balances come from the ledger."""
