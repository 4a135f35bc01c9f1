"""Runs one service process: `paysys serve NAME` (what supervisord starts for each program).

Eventlet must patch the standard library before anything imports socket,
threading or psycopg2, so this module imports nothing of the project at the top.
"""
import os
import signal
import sys

# Allocations before the youngest generation is collected (Python's default is 700), and
# collections of a generation before the next is (default 10).
GC_YOUNG_THRESHOLD = 50_000
GC_OLDER_THRESHOLD = 20


def _green_the_process():
    import shared  # noqa: F401 - first: it silences eventlet's deprecation notice
    import eventlet

    eventlet.monkey_patch()
    # psycopg2 is a C driver: without a wait callback a slow query blocks the hub
    # (every worker and the AMQP heartbeats of the process). psycogreen installs one.
    from psycogreen.eventlet import patch_psycopg

    patch_psycopg()


def _calm_the_garbage_collector():
    """What the process made to start (modules, SQLAlchemy's caches, the service) lives as
    long as it does: frozen out of the collector's scans. The collector then runs on a
    larger young generation: a batch makes many short-lived objects (rows, dicts, JSON),
    and a full scan of everything each few hundred of them cost a busy service more
    time than its own code."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_OLDER_THRESHOLD, GC_OLDER_THRESHOLD)


def service_class(process_name, service):
    """The Nameko class for ``process_name``; validator_N gets its own RPC identity, which
    each of its replicas (validator_N-2…) shares."""
    import importlib

    from shared.catalog import identity_of

    module_name, class_name = service.entry.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    identity = identity_of(process_name)
    if cls.name != identity:
        cls = type(cls.__name__ + identity.split("_")[-1], (cls,), {"name": identity})
    return cls


def _heartbeat(process_name, runner):
    """The heartbeat `paysys health` reads, if PAYSYS_HEARTBEAT_FILE names one (the image
    sets it), watching ``runner``'s consumers; started once the runner is."""
    from paysys.heartbeat import Heartbeat, heartbeat_file

    path = heartbeat_file()
    if path is None:
        return None
    # A heartbeat left by an earlier run of this container must not pass for ours.
    path.unlink(missing_ok=True)
    return Heartbeat(path, process_name, runner)


def serve(process_name):
    _green_the_process()

    from nameko.runners import ServiceRunner

    from shared.catalog import service_for, settings_models
    from shared.config import load_config
    from shared.logs import configure_logging

    from shared.settings import SettingsError, load_all

    from paysys import process_overrides
    from shared.catalog import identity_of

    process_overrides.apply(identity_of(process_name))
    config = load_config()
    service = service_for(process_name)
    # Every setting the process reads is checked before it starts: a bad value stops it
    # here, named, rather than as a traceback (or worse, a misbehaviour) later.
    try:
        settings = load_all({"shared": settings_models()["shared"],
                             service.name: service.settings_model()}, config)
    except SettingsError as error:
        sys.stderr.write("{}: not started. {}\n".format(process_name, error))
        sys.exit(2)
    # A service may size its own worker pool (the gateway's is large).
    own_max_workers = settings[service.name].own_max_workers
    if own_max_workers:
        config["max_workers"] = own_max_workers
    configure_logging(process_name, settings["shared"].logging.level)
    from shared.tracing import configure_export

    configure_export(settings["shared"].tracing, process_name)
    from shared.catalog import PROCESS_NAME_KEY

    config[PROCESS_NAME_KEY] = process_name
    runner = ServiceRunner(config)
    runner.add_service(service_class(process_name, service))

    import eventlet

    def stop(signum, frame):
        # Graceful: finish running workers, then exit (supervisord sends SIGTERM).
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    heartbeat = _heartbeat(process_name, runner)
    runner.start()
    _calm_the_garbage_collector()
    if heartbeat:
        heartbeat.start()
    import logging

    logging.getLogger("paysys.runner").info(
        "%s started", process_name, extra={"fields": {"pid": os.getpid()}})
    runner.wait()
    logging.getLogger("paysys.runner").info("%s stopped", process_name)


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else os.environ["PAYSYS_SERVICE"])
