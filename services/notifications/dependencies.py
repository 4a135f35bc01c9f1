"""Dependency providers and the timer of the notifications service."""
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import Timer

from services.notifications.settings import Settings
from shared.rpc import ServiceRpc


class NotificationSettings(DependencyProvider):
    """The ``notifications`` section of the config with its defaults, checked at start
    (a bad value stops the service from starting rather than misbehaving later)."""

    def setup(self):
        self.settings = Settings.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


class ServiceCalls(ServiceRpc):
    """``shared.rpc.ServiceRpc`` whose deadline is ``notifications.rpc_timeout_ms``, with
    its default when the key is absent (ServiceRpc itself requires the key)."""

    def __init__(self, **options):
        super().__init__("notifications", **options)

    def setup(self):
        RpcProxy.setup(self)
        config = self.container.config
        self.timeout_s = Settings.from_config(config).rpc_timeout_ms / 1000
        breaker_config = config.get("circuit_breaker") or {}
        self.breaker_options = {
            "failure_threshold": int(breaker_config.get("failure_threshold", 5)),
            "reset_timeout_s": float(breaker_config.get("reset_timeout_s", 5)),
        }


class PollTimer(Timer):
    """A timer whose interval is ``notifications.poll_interval_s``; fires at start, then
    every interval or as soon as the previous tick ends if that took longer."""

    def __init__(self, **kwargs):
        super().__init__(interval=Settings.poll_interval_s, eager=True, **kwargs)

    def setup(self):
        super().setup()
        self.interval = Settings.from_config(self.container.config).poll_interval_s


poll_timer = PollTimer.decorator
