"""The notifications service's settings (config.yml's ``notifications`` section): SMTP,
webhook delivery and its retries. Every default is in config.yml."""
from pathlib import Path

from pydantic import field_validator, model_validator

from services.notifications.destinations import parse_networks
from shared.settings import (
    Port, PositiveFloat, PositiveInt, Section, ServiceSettings, load, setting)

KEY_FILE_NAME = "webhook-secrets.key"


class Settings(Section):
    email_enabled: bool = setting(
        "E-mail about each transaction to the users concerned (webhooks work either way)")
    smtp_host: str = setting("SMTP server e-mail goes to")
    smtp_port: Port = setting("Port of the SMTP server")
    smtp_from: str = setting("From: of the e-mail sent", min_length=1)
    smtp_timeout_s: PositiveFloat = setting("One SMTP conversation, connect to QUIT")
    webhook_timeout_s: PositiveFloat = setting("One webhook POST, connect to status line")
    retry_base_s: PositiveFloat = setting(
        "A failed delivery is retried after uniform(0, min(cap, base * 2^(n-1))) s")
    retry_cap_s: PositiveFloat = setting("Longest wait before a retry")
    max_attempts: PositiveInt = setting("Failures after which a delivery is `failed`")
    poll_interval_s: PositiveFloat = setting("The delivery loop's tick")
    tick_budget_s: PositiveFloat = setting("A tick claims new work for at most this long")
    concurrency: PositiveInt = setting("Sends in flight per process")
    rpc_timeout_ms: PositiveInt = setting("Deadline of the auth lookup of a recipient's address")
    lease_s: PositiveFloat = setting(
        "A delivery claimed by a process that died is due again after this")
    max_webhooks_per_user: PositiveInt = setting("Webhooks a user may register")
    webhook_allowed_networks: tuple = setting(
        "Networks (comma-separated CIDRs) webhooks may reach besides public addresses; "
        "`none` or empty: none (production)")
    webhook_key_file: str = setting(
        "Fernet key file that seals webhook secrets; empty: <run_dir>/keys/" + KEY_FILE_NAME)

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value):
        return parse_networks(value)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self):
        # A lease shorter than one send would let a second process send the same delivery
        # while the first is still at it.
        longest_send_s = self.rpc_timeout_ms / 1000 + max(self.smtp_timeout_s,
                                                          self.webhook_timeout_s)
        if self.lease_s <= longest_send_s:
            raise ValueError("notifications.lease_s must exceed one send ({:g} s)".format(
                longest_send_s))
        return self

    @classmethod
    def from_config(cls, config):
        """The ``notifications`` section of ``config`` (config.yml as a dict), checked;
        ``SettingsError`` (a ValueError) naming a bad value."""
        return load(NotificationsSettings, config).notifications

    def key_path(self, keys_path):
        """The webhook-secret key file: the configured one, else in the keys directory."""
        return Path(self.webhook_key_file) if self.webhook_key_file \
            else Path(keys_path) / KEY_FILE_NAME


class NotificationsSettings(ServiceSettings):
    notifications: Settings
