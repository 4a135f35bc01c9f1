"""The RabbitMQ cluster's settings as each process and each node is given them: node names
and ports, the failover list of URIs kombu reads, the queue type, each node's files."""
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from kombu import Connection, Queue

from chaos.experiments import catalogue
from paysys import rabbitmq_cluster
from paysys.rabbitmq_cluster import Cluster, ClusterError, stop_nodes
from paysys.settings_report import mask
from shared.config import load_config
from shared.queues import declare_with_type
from shared.rabbitmq import cluster_nodes, failover_uri, queue_type
from shared.settings import SettingsError, load
from shared.shared_settings import SharedSettings

SINGLE_NODE_URI = "pyamqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def cluster_env(monkeypatch, tmp_path):
    for name in ("PAYSYS_AMQP_URI", "PAYSYS_RABBITMQ_QUEUE_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PAYSYS_RABBITMQ_NODES", "3")
    monkeypatch.setenv("PAYSYS_RABBITMQ_CLUSTER_PORT_BASE", "24100")
    monkeypatch.setenv("PAYSYS_RABBITMQ_CLUSTER_NAME", "paysys-test-rabbit")
    monkeypatch.setenv("PAYSYS_RUN_DIR", str(tmp_path))
    return monkeypatch


def test_each_node_has_its_own_name_amqp_port_and_distribution_port():
    nodes = cluster_nodes(3, 5681, "paysys-rabbit")

    assert [node.name for node in nodes] == [
        "paysys-rabbit-1@localhost", "paysys-rabbit-2@localhost", "paysys-rabbit-3@localhost"]
    assert [node.amqp_port for node in nodes] == [5681, 5682, 5683]
    assert [node.dist_port for node in nodes] == [5697, 5698, 5699]
    ports = [node.amqp_port for node in nodes] + [node.dist_port for node in nodes]
    assert len(set(ports)) == 6 and 5672 not in ports


def test_kombu_reads_the_failover_list_as_every_node_first_one_first():
    connection = Connection(failover_uri(cluster_nodes(3, 24100, "c")))

    assert (connection.hostname, connection.port) == ("127.0.0.1", 24100)
    assert [Connection(alternate).port for alternate in connection.alt] == [24100, 24101, 24102]


def test_one_node_is_the_default_and_leaves_amqp_uri_as_configured(monkeypatch):
    for name in ("PAYSYS_AMQP_URI", "PAYSYS_RABBITMQ_NODES", "PAYSYS_RABBITMQ_QUEUE_TYPE"):
        monkeypatch.delenv(name, raising=False)
    config = load_config()

    assert config["AMQP_URI"] == SINGLE_NODE_URI
    assert load(SharedSettings, config).rabbitmq.services_queue_type == "classic"


def test_a_cluster_gives_every_process_all_its_nodes_in_place_of_amqp_uri(cluster_env):
    cluster_env.setenv("PAYSYS_AMQP_URI", SINGLE_NODE_URI)
    config = load_config()

    assert config["AMQP_URI"].split(";") == [
        "pyamqp://guest:guest@127.0.0.1:{}/".format(port) for port in (24100, 24101, 24102)]
    assert load(SharedSettings, config).rabbitmq.services_queue_type == "quorum"


@pytest.mark.parametrize("setting, nodes, expected", [
    ("auto", 1, "classic"), ("auto", 3, "quorum"), ("classic", 3, "classic"),
    ("quorum", 1, "quorum")])
def test_auto_queues_are_quorum_on_a_cluster_only(setting, nodes, expected):
    assert queue_type(setting, nodes) == expected


@pytest.mark.parametrize("variable, value", [
    ("PAYSYS_RABBITMQ_NODES", "0"), ("PAYSYS_RABBITMQ_NODES", "17"),
    ("PAYSYS_RABBITMQ_CLUSTER_NAME", "rabbit@elsewhere"),
    ("PAYSYS_RABBITMQ_QUEUE_TYPE", "stream")])
def test_a_bad_cluster_setting_is_refused_by_name(cluster_env, variable, value):
    cluster_env.setenv(variable, value)

    with pytest.raises(SettingsError, match=variable):
        load(SharedSettings, load_config())


def test_each_node_listens_on_loopback_and_lists_every_node_as_a_peer(cluster_env):
    cluster = Cluster(load_config())
    conf = cluster.render_conf(cluster.member(2))

    assert "listeners.tcp.1 = 127.0.0.1:24101\n" in conf
    for index in (1, 2, 3):
        assert "classic_config.nodes.{0} = paysys-test-rabbit-{0}@localhost".format(
            index) in conf


def test_a_node_reads_only_files_of_its_own_under_the_run_dir(cluster_env, tmp_path):
    cluster_env.setenv("RABBITMQ_NODENAME", "rabbit@localhost")  # the machine's node
    cluster_env.setenv("RABBITMQ_CONFIG_FILE", "/etc/rabbitmq/rabbitmq.conf")
    cluster = Cluster(load_config())
    env = cluster.environment(cluster.member(3))

    assert env["RABBITMQ_NODENAME"] == "paysys-test-rabbit-3@localhost"
    assert (env["RABBITMQ_NODE_PORT"], env["RABBITMQ_DIST_PORT"]) == ("24102", "24118")
    files = [value for name, value in env.items()
             if name.startswith("RABBITMQ_") and name.endswith(("_FILE", "_BASE"))]
    assert files and all(value.startswith(str(tmp_path / "rabbitmq")) for value in files)
    assert env["HOME"] == str(tmp_path / "rabbitmq" / "home")  # the cluster's cookie


def _container(queue_type_setting, nodes):
    config = load_config()
    config["rabbitmq"] = dict(config["rabbitmq"], nodes=nodes, queue_type=queue_type_setting)
    return SimpleNamespace(config=config)


def test_a_shared_durable_queue_is_declared_quorum_on_a_cluster():
    queue = Queue("rpc-ledger", durable=True)
    declare_with_type(queue, _container("auto", 3))

    assert queue.queue_arguments == {"x-queue-type": "quorum"}


def test_reply_and_exclusive_queues_stay_classic_and_one_node_declares_as_before():
    reply = Queue("rpc.reply-gateway-1", durable=False, queue_arguments={"x-expires": 300000})
    broadcast = Queue("evt-a-b--c.d-1", durable=True, exclusive=True, auto_delete=True)
    single = Queue("rpc-ledger", durable=True)
    declare_with_type(reply, _container("auto", 3))
    declare_with_type(broadcast, _container("auto", 3))
    declare_with_type(single, _container("auto", 1))

    assert reply.queue_arguments == {"x-expires": 300000}
    assert not broadcast.queue_arguments
    assert not single.queue_arguments


def test_down_stops_every_node_of_the_run_dir_whatever_the_settings_say(tmp_path):
    # Stand-ins for two running nodes (a node stops on SIGTERM as these do, and its
    # environment names its pid file), a dead one, and a pid file whose pid is now
    # another process's.
    pid_files = [tmp_path / "paysys-rabbit-{}".format(index) / "pid" for index in (1, 2, 3, 4)]
    for pid_file in pid_files:
        pid_file.parent.mkdir()
    running = [subprocess.Popen(["sleep", "60"], env={"RABBITMQ_PID_FILE": str(pid_file)})
               for pid_file in pid_files[:2]]
    stranger = subprocess.Popen(["sleep", "60"])
    for process, pid_file in zip(running + [stranger], pid_files[:2] + pid_files[3:]):
        pid_file.write_text(str(process.pid))
    pid_files[2].write_text("999999999")

    try:
        assert stop_nodes(tmp_path) == ["paysys-rabbit-1", "paysys-rabbit-2"]
        assert [process.wait(timeout=5) for process in running] == [-15, -15]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_paysys_config_masks_the_password_of_every_node(cluster_env):
    masked = mask(load_config()["AMQP_URI"], secret=True)

    assert masked.count("guest:***@127.0.0.1:") == 3 and "guest:guest" not in masked


def test_the_node_kill_runs_on_a_cluster_and_the_broker_restart_on_one_node():
    experiments = catalogue()

    assert experiments["rabbitmq-node-kill"].runs_on(3)
    assert not experiments["rabbitmq-node-kill"].runs_on(1)
    assert experiments["rabbitmq-restart"].runs_on(1)
    assert not experiments["rabbitmq-restart"].runs_on(3)
    assert experiments["kill-ledger"].runs_on(1) and experiments["kill-ledger"].runs_on(3)


def listening_as_node_2s_port():
    """A socket listening on the port node 2 of a cluster based just below it would take,
    and that base, found where every other port of the three nodes is free (a busy
    machine has other programs on ports of its own)."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        base = taken.getsockname()[1] - 1
        nodes = cluster_nodes(3, base, "paysys-test-rabbit")
        others = [port for node in nodes for port in (node.amqp_port, node.dist_port)
                  if port != base + 1]
        if not any(rabbitmq_cluster._taken(port) for port in others):
            return taken, base
        taken.close()
    pytest.fail("no free ports around an ephemeral one in 50 tries")


def test_a_taken_port_is_named_before_any_node_starts(cluster_env):
    spawned = []
    cluster_env.setattr(rabbitmq_cluster, "scripts_dir", lambda: Path("/usr/lib/rabbitmq/bin"))
    cluster_env.setattr(Cluster, "_spawn", lambda self, scripts, member: spawned.append(member))
    taken, base = listening_as_node_2s_port()
    with taken:
        cluster_env.setenv("PAYSYS_RABBITMQ_CLUSTER_PORT_BASE", str(base))
        cluster = Cluster(load_config())
        with pytest.raises(ClusterError, match="port {} of .*-2@localhost is taken".format(
                base + 1)):
            cluster.start()
    assert spawned == []  # not even node 1, whose ports are free


def test_paysys_ps_names_each_node_and_a_dead_one(cluster_env):
    config = load_config()
    cluster = Cluster(config)
    # Node 1 "runs" (a process whose environment names its pid file); 2 and 3 do not.
    first = cluster.member(1)
    first.pid_file.parent.mkdir(parents=True)
    stand_in = subprocess.Popen(["sleep", "60"], env={"RABBITMQ_PID_FILE": str(first.pid_file)})
    first.pid_file.write_text(str(stand_in.pid))
    try:
        (line,) = rabbitmq_cluster.status_lines(config)
    finally:
        stand_in.kill()
        stand_in.wait()
    assert "{} (127.0.0.1:{}) running, pid {}".format(
        first.name, first.node.amqp_port, stand_in.pid) in line
    assert line.count("DOWN") == 2


def test_paysys_ps_says_nothing_of_rabbitmq_on_one_node(monkeypatch):
    monkeypatch.delenv("PAYSYS_RABBITMQ_NODES", raising=False)
    assert rabbitmq_cluster.status_lines(load_config()) == []
