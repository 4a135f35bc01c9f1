"""The gateway service: one thin handler per route of gateway/routes.py."""
import inspect
import json

from nameko.dependency_providers import Config
from werkzeug.wrappers import Response

from gateway.http import GatewayEndpoint, endpoint, json_response
from gateway.metrics import exposition
from gateway.openapi import build_spec
from gateway.readiness import check_kafka, check_rabbitmq, readiness_report
from gateway.routes import BY_OPERATION, ROUTES
from shared.catalog import rpc_identities
from shared.config import kafka_bootstrap_servers
from shared.db import Database
from shared.errors import NotImplementedYet
from shared.redis import Redis
from shared.rpc import ServiceRpc
from shared.service import ServiceBase


class GatewayService(ServiceBase):
    name = "gateway"

    config = Config()
    db = Database(schema="gateway")
    redis = Redis()
    rpc = ServiceRpc("gateway")

    @endpoint(BY_OPERATION["health"])
    def get_health(self, request):
        return json_response({"status": "ok"})

    @endpoint(BY_OPERATION["ready"])
    def get_ready(self, request):
        config = self.config
        timeout_s = int(config["gateway"]["readiness_timeout_ms"]) / 1000
        checks = {
            "rabbitmq": lambda: check_rabbitmq(config["AMQP_URI"], timeout_s),
            "postgresql": self.db.schema_version,
            "redis": self.redis.ping,
            "kafka": lambda: check_kafka(kafka_bootstrap_servers(config), timeout_s),
        }
        for identity in rpc_identities(config):
            checks[identity] = self._pinger(identity, timeout_s)
        report = readiness_report(checks, timeout_s)
        status = 200 if report["status"] == "ready" else 503
        headers = {"Retry-After": "5"} if status == 503 else None
        return json_response(report, status, headers)

    @endpoint(BY_OPERATION["metrics"])
    def get_metrics(self, request):
        body, content_type = exposition()
        return Response(body, status=200, content_type=content_type)

    @endpoint(BY_OPERATION["openapi"])
    def get_openapi(self, request):
        spec = build_spec(self.config["gateway"]["public_url"])
        return Response(json.dumps(spec), status=200, mimetype="application/json")

    def _pinger(self, identity, timeout_s):
        return lambda: self.rpc[identity].health(timeout_s=timeout_s)


def _not_implemented(route):
    def handler(self, request, **path_values):
        raise NotImplementedYet(
            "{} {} is part of the contract but not implemented yet".format(route.method, route.path)
        )

    handler.__name__ = route.operation_id
    return endpoint(route)(handler)


def _routes_with_handlers(service_cls):
    return {
        entrypoint.route.operation_id
        for _, member in inspect.getmembers(service_cls)
        for entrypoint in getattr(member, "nameko_entrypoints", ())
        if isinstance(entrypoint, GatewayEndpoint)
    }


# Every route of the contract answers: those whose feature has not landed yet
# say so with 501 problem+json instead of a bare 404.
_implemented = _routes_with_handlers(GatewayService)
for _route in ROUTES:
    if _route.operation_id not in _implemented:
        setattr(GatewayService, "not_implemented_" + _route.operation_id,
                _not_implemented(_route))
