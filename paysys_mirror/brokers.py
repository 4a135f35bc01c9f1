"""Is a Kafka broker there at all? Asked before any Kafka client is made."""
import socket


def addresses(bootstrap_servers):
    """``[(host, port)]`` of a ``host:port,host:port`` list (``PLAINTEXT://`` allowed)."""
    found = []
    for address in bootstrap_servers.split(","):
        address = address.strip().split("://")[-1]
        host, _, port = address.rpartition(":")
        if host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


def probe(bootstrap_servers, timeout_s):
    """Does any bootstrap address accept a TCP connection? Asked before any Kafka client
    is made, because a client left connecting to a dead broker logs every few
    milliseconds (kafka-python), and this asks silently."""
    for host, port in addresses(bootstrap_servers):
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return True
        except OSError:
            continue
    return False
