"""Where a service process serves its metrics and liveness: ``metrics.port_base`` plus the
process's place in shared/catalog.py's ``process_names`` (auth first, the gateway last),
on ``metrics.host``. A base of 0 switches the port off."""
from shared.catalog import process_names
from shared.settings import load
from shared.shared_settings import SharedSettings


def metrics_port(config, process_name):
    """The port ``process_name`` serves /metrics and /livez on, or None (switched off, or a
    process the catalog does not know). ``config``: config.yml as a dict, read through
    the shared settings model."""
    base = load(SharedSettings, config).metrics.port_base
    if base <= 0:
        return None
    try:
        return base + process_names(config).index(process_name)
    except (KeyError, ValueError):
        return None


def metrics_host(config):
    return load(SharedSettings, config).metrics.host


def metrics_ports(config):
    """``{process name: port}`` of every process of the system (empty when off)."""
    ports = {name: metrics_port(config, name) for name in process_names(config)}
    return {name: port for name, port in ports.items() if port is not None}
