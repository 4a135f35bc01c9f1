"""A RabbitMQ vhost of a test's own: its queues never meet another test's, a running
system's or a developer's."""
import os
from contextlib import contextmanager

from nameko.runners import ServiceRunner

from harness import servers
from shared.config import load_config


@contextmanager
def config_on_own_vhost(name):
    """The project's configuration with AMQP on a fresh vhost named after ``name`` (and
    this process), deleted afterwards."""
    vhost = "paysys_unit_{}_{}".format(name, os.getpid())
    servers.create_vhost(vhost)
    config = load_config()
    config["AMQP_URI"] = "pyamqp://guest:guest@127.0.0.1:5672/{}".format(vhost)
    try:
        yield config
    finally:
        servers.delete_vhost(vhost)


@contextmanager
def running_on_own_vhost(name, *services):
    """``(config, runner)``: Nameko running ``services`` on a vhost of their own
    (``config_on_own_vhost``), killed afterwards."""
    with config_on_own_vhost(name) as config:
        runner = ServiceRunner(config)
        for service in services:
            runner.add_service(service)
        runner.start()
        try:
            yield config, runner
        finally:
            runner.kill()
