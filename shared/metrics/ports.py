"""Where a service process serves its metrics and liveness: ``metrics.port_base`` plus the
process's place in shared/catalog.py's ``process_names`` (auth first, the gateway last),
on ``metrics.host``. A base of 0 switches the port off."""
from shared.catalog import process_names


def metrics_port(config, process_name):
    """The port ``process_name`` serves /metrics and /livez on, or None (switched off, or a
    process the catalog does not know)."""
    section = config.get("metrics") or {}
    base = int(section.get("port_base") or 0)
    if base <= 0:
        return None
    try:
        return base + process_names(config).index(process_name)
    except (KeyError, ValueError):
        return None


def metrics_host(config):
    return str((config.get("metrics") or {}).get("host") or "127.0.0.1")


def metrics_ports(config):
    """``{process name: port}`` of every process of the system (empty when off)."""
    ports = {name: metrics_port(config, name) for name in process_names(config)}
    return {name: port for name, port in ports.items() if port is not None}
