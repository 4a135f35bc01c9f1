"""Redis for services: one connection pool per process, every call bounded by a timeout."""
import redis
from nameko.extensions import DependencyProvider


class Redis(DependencyProvider):
    def __init__(self):
        self.client = None

    def setup(self):
        config = self.container.config["redis"]
        timeout_s = float(config["socket_timeout_s"])
        self.client = redis.Redis.from_url(
            config["url"],
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            decode_responses=True,
        )

    def stop(self):
        if self.client is not None:
            self.client.close()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self.client
