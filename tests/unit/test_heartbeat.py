"""`paysys health`: what a process's heartbeat says about it (paysys/heartbeat.py)."""
import json
import time
from types import SimpleNamespace

from nameko.messaging import QueueConsumer

from paysys import cli
from paysys.heartbeat import Heartbeat, check, problems

NOW_S = 1_000_000.0


def beat(loop_age_s=1, consume_age_s=1, http_port=None, metrics_port=None):
    return {"process": "ledger", "pid": 7, "loop_at": NOW_S - loop_age_s,
            "consuming_at": None if consume_age_s is None else NOW_S - consume_age_s,
            "http_port": http_port, "metrics_port": metrics_port}


def test_a_fresh_heartbeat_is_healthy():
    assert problems(beat(), NOW_S) == []


def test_a_stalled_event_loop_fails_liveness_and_readiness():
    assert problems(beat(loop_age_s=30), NOW_S, live_only=True) == [
        "its event loop last ran 30 s ago"]
    assert problems(beat(loop_age_s=30, consume_age_s=30), NOW_S)[0].startswith(
        "its event loop")


def test_a_consumer_cut_from_rabbitmq_fails_readiness_only():
    away = beat(consume_age_s=25)
    assert problems(away, NOW_S, live_only=True) == []
    assert problems(away, NOW_S) == [
        "its RabbitMQ consumer last ran 25 s ago (broker away?)"]
    assert problems(beat(consume_age_s=None), NOW_S) == [
        "it has not consumed from RabbitMQ since it started"]


def test_the_gateway_must_answer_its_own_health_route():
    asked = []

    def http_get(port, path):
        asked.append((port, path))
        return "http://127.0.0.1:8000/health did not answer: refused"

    assert problems(beat(http_port=8000), NOW_S, http_get=http_get) == [
        "http://127.0.0.1:8000/health did not answer: refused"]
    assert asked == [(8000, "/health")]
    assert problems(beat(http_port=8000), NOW_S, live_only=True, http_get=http_get) == []


def test_a_process_with_a_metrics_port_must_answer_livez_there_live_or_not():
    asked = []

    def http_get(port, path):
        asked.append((port, path))
        return "" if port == 9406 else "http://127.0.0.1:{}{} answered 503".format(port, path)

    assert problems(beat(metrics_port=9406), NOW_S, live_only=True, http_get=http_get) == []
    assert problems(beat(metrics_port=9407), NOW_S, live_only=True, http_get=http_get) == [
        "http://127.0.0.1:9407/livez answered 503"]
    assert problems(beat(metrics_port=9407), NOW_S, http_get=http_get) == [
        "http://127.0.0.1:9407/livez answered 503"]
    assert asked == [(9406, "/livez"), (9407, "/livez"), (9407, "/livez")]


def test_the_process_writes_what_the_check_reads(tmp_path):
    consumer = QueueConsumer()
    runner = SimpleNamespace(containers=[SimpleNamespace(extensions=[consumer])])
    path = tmp_path / "beat" / "heartbeat.json"
    heartbeat = Heartbeat(path, "validator_2", runner)
    path.parent.mkdir()
    heartbeat.write()
    assert check(path) == (False, "validator_2 (pid {}): it has not consumed from RabbitMQ "
                                  "since it started".format(json.loads(path.read_text())["pid"]))
    consumer.on_iteration()  # kombu's consume loop turns once
    heartbeat.write()
    healthy, message = check(path)
    assert healthy and message.endswith(": serving")
    assert time.time() - json.loads(path.read_text())["consuming_at"] < 5


def test_no_heartbeat_is_unhealthy_and_says_why(tmp_path, capsys):
    assert check(tmp_path / "none.json") == (
        False, "no heartbeat at {} (the process has not started, or keeps none)".format(
            tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{")
    assert check(tmp_path / "bad.json")[0] is False


def test_the_command_exits_0_when_serving_1_when_not(tmp_path, monkeypatch, capsys):
    path = tmp_path / "heartbeat.json"
    path.write_text(json.dumps(dict(beat(), loop_at=time.time(), consuming_at=time.time())))
    monkeypatch.setenv("PAYSYS_HEARTBEAT_FILE", str(path))
    assert cli.main(["health"]) == 0
    assert "ledger (pid 7): serving" in capsys.readouterr().out
    path.write_text(json.dumps(dict(beat(), loop_at=time.time(), consuming_at=0)))
    assert cli.main(["health"]) == 1
    assert cli.main(["health", "--live"]) == 0
    monkeypatch.delenv("PAYSYS_HEARTBEAT_FILE")
    assert cli.main(["health"]) == 2
    assert "PAYSYS_HEARTBEAT_FILE" in capsys.readouterr().err


def test_the_heartbeat_names_the_metrics_port_once_the_process_serves_it(tmp_path):
    from shared.metrics.server import MetricsPort

    metrics = MetricsPort()
    runner = SimpleNamespace(containers=[SimpleNamespace(extensions=[metrics])])
    path = tmp_path / "heartbeat.json"
    heartbeat = Heartbeat(path, "ledger", runner)  # made before the runner starts
    heartbeat.write()
    assert json.loads(path.read_text())["metrics_port"] is None
    metrics.port, metrics.socket = 9406, object()  # what setup does when the runner starts
    heartbeat.write()
    assert json.loads(path.read_text())["metrics_port"] == 9406
