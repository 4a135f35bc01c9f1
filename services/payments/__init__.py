"""Payments: owns merchant payments (authorize, capture, void, refund), built on transactions."""
