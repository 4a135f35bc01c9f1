"""Dependency providers and the timer of the notifications service."""
from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from services.notifications.secret_box import key_file, load_webhook_key
from services.notifications.settings import Settings
from shared.rpc import ServiceRpc


class NotificationSettings(DependencyProvider):
    """The ``notifications`` section of the config, checked at start (a bad value stops
    the service from starting rather than misbehaving later)."""

    def setup(self):
        self.settings = Settings.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


class WebhookSecrets(DependencyProvider):
    """The ``SecretBox`` that seals and opens webhook secrets, its key read once at setup: a
    service that could not sign deliveries must not start (it would fail every one)."""

    def setup(self):
        config = self.container.config
        try:
            self.box = load_webhook_key(config)
        except FileNotFoundError:
            raise RuntimeError(
                "notifications: no webhook-secret key at {}; `paysys keys` (or `make up`) "
                "creates it".format(key_file(config))) from None

    def get_dependency(self, worker_ctx):
        return self.box


def service_calls():
    """``shared.rpc.ServiceRpc`` whose deadline is ``notifications.rpc_timeout_ms``."""
    return ServiceRpc(
        timeout_ms_of=lambda container: Settings.from_config(container.config).rpc_timeout_ms)


class PollTimer(Timer):
    """A timer whose interval is ``notifications.poll_interval_s``; fires at start, then
    every interval or as soon as the previous tick ends if that took longer."""

    def __init__(self, **kwargs):
        # The interval is the configured one, read at setup.
        super().__init__(interval=None, eager=True, **kwargs)

    def setup(self):
        super().setup()
        self.interval = Settings.from_config(self.container.config).poll_interval_s


poll_timer = PollTimer.decorator
