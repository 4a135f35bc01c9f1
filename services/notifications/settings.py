"""The notifications section of config.yml, each key with its default.

    notifications:
      smtp_host: 127.0.0.1          # where e-mail goes (any SMTP server; tests use a sink)
      smtp_port: 1025
      smtp_from: "paysys <notifications@paysys.local>"
      smtp_timeout_s: 5             # one SMTP conversation, connect to QUIT
      email_enabled: true           # false: events make webhook deliveries only
      webhook_timeout_s: 5          # one POST, connect to status line
      retry_base_s: 1               # backoff before retry n: uniform(0, min(cap, base * 2^(n-1)))
      retry_cap_s: 300
      max_attempts: 20              # failures of the recipient before a delivery is `failed`
      poll_interval_s: 0.5          # the delivery loop's tick
      concurrency: 10               # sends in flight per process
      lease_s: 60                   # a claimed delivery is due again after this if not finished
      tick_budget_s: 2              # a tick claims new work for at most this long
      rpc_timeout_ms: 5000          # deadline of the auth lookup of a recipient's address
      max_webhooks_per_user: 25
      webhook_allowed_networks: ""  # networks webhooks may reach besides public addresses
                                    # (comma-separated CIDRs; empty or "none": none)

The key file of webhook secrets (``webhook_key_file``) is read by secret_box.py.
"""
from dataclasses import dataclass, fields

from services.notifications.destinations import parse_networks


@dataclass(frozen=True)
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_from: str = "paysys <notifications@paysys.local>"
    smtp_timeout_s: float = 5.0
    email_enabled: bool = True
    webhook_timeout_s: float = 5.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    max_attempts: int = 20
    poll_interval_s: float = 0.5
    concurrency: int = 10
    lease_s: float = 60.0
    tick_budget_s: float = 2.0
    rpc_timeout_ms: int = 5000
    max_webhooks_per_user: int = 25
    # Every other non-public address is refused (destinations.py); a tuple of networks.
    webhook_allowed_networks: tuple = ()

    def __post_init__(self):
        try:
            networks = parse_networks(self.webhook_allowed_networks)
        except ValueError as error:
            raise ValueError("notifications.webhook_allowed_networks: {}".format(error)) from None
        object.__setattr__(self, "webhook_allowed_networks", networks)

    @classmethod
    def from_config(cls, config):
        """The settings of ``config`` (the whole config.yml dict); absent or empty keys
        take their defaults."""
        section = (config or {}).get("notifications") or {}
        values = {}
        for field in fields(cls):
            raw = section.get(field.name)
            if raw is None or raw == "":
                continue
            values[field.name] = _coerce(field.type, raw, field.name)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self):
        positive = ("smtp_port", "smtp_timeout_s", "webhook_timeout_s", "retry_base_s",
                    "retry_cap_s", "max_attempts", "poll_interval_s", "concurrency", "lease_s",
                    "tick_budget_s", "rpc_timeout_ms", "max_webhooks_per_user")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError("notifications.{} must be positive".format(name))
        # A lease shorter than one send would let a second process send the same delivery
        # while the first is still at it.
        longest_send_s = self.rpc_timeout_ms / 1000 + max(self.smtp_timeout_s,
                                                          self.webhook_timeout_s)
        if self.lease_s <= longest_send_s:
            raise ValueError("notifications.lease_s must exceed one send ({:g} s)".format(
                longest_send_s))


def _coerce(kind, raw, name):
    if kind in (bool, "bool"):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError("notifications.{} must be true or false".format(name))
    if kind in (tuple, "tuple"):
        return raw  # __post_init__ parses it
    kind = {"str": str, "int": int, "float": float}.get(kind, kind)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError("notifications.{}: {!r} is not a {}".format(
            name, raw, kind.__name__)) from None
