"""Users and their sessions against a running test system, as an HTTP client sees them."""
import uuid
from dataclasses import dataclass, field

from gateway.problems import BY_CODE

PASSWORD = "correct horse battery staple"
PROBLEM_JSON = "application/problem+json"


@dataclass
class Session:
    """A registered, logged-in user."""

    system: object
    id: str
    email: str
    tokens: dict = field(default_factory=dict)

    @property
    def headers(self):
        return {"Authorization": "Bearer " + self.tokens["access_token"]}

    def request(self, method, path, headers=None, **kwargs):
        return self.system.request(method, path, headers=dict(self.headers, **(headers or {})),
                                   **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def open_account(self, currency="USD", name=None):
        body = {"currency": currency}
        if name is not None:
            body["name"] = name
        response = self.post("/v1/accounts", json=body)
        assert response.status_code == 201, response.text
        return response.json()


def unique_email(prefix="user"):
    return "{}-{}@example.test".format(prefix, uuid.uuid4().hex[:12])


def register(system, email=None, password=PASSWORD, full_name="Test User"):
    response = system.post("/v1/auth/register", json={
        "email": email or unique_email(), "password": password, "full_name": full_name})
    assert response.status_code == 201, response.text
    return response.json()


def login(system, email, password=PASSWORD):
    response = system.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def new_session(system, role=None):
    """A fresh customer, or a user made with ``paysys create-user --role ROLE``."""
    email = unique_email(role or "customer")
    if role is None:
        user_id = register(system, email)["id"]
    else:
        system.paysys("create-user", "--email", email, "--password", PASSWORD, "--role", role)
        user_id = None
    tokens = login(system, email)
    session = Session(system, user_id, email, tokens)
    if user_id is None:
        session.id = session.get("/v1/users/me").json()["id"]
    return session


def assert_problem(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == PROBLEM_JSON, response.headers
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    # Each code has its own documented type and title (docs/errors.md).
    documented = BY_CODE[body["code"]]
    assert (body["type"], body["title"]) == (documented.type, documented.title), body
    # It names the request it answers (a replay: the request that made the answer).
    if response.headers.get("Idempotent-Replayed") != "true":
        assert body["instance"] == response.headers["X-Request-ID"], body
    # What the problem says, without which request it answered: two answers can be
    # compared (a stranger's account and an unknown one must look the same).
    del body["instance"]
    return body
