"""Notifications: owns deliveries of e-mail and signed webhooks, with retries and a delivery log."""
