"""Every problem+json ``code`` has its own documented ``type`` and one title: the codes the
source can produce are exactly those docs/errors.md lists, with the type, status and title the
gateway answers with."""
import ast
import re
from pathlib import Path

import pytest
from werkzeug.exceptions import NotFound as WerkzeugNotFound

from gateway import http, problems
from shared import errors
from shared.wire_json import parse

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("gateway", "services", "shared", "paysys")
ERROR_CLASSES = {"PaysysError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict",
                 "UnsupportedMediaType", "ValidationFailed", "RateLimited", "ServiceUnavailable",
                 "CircuitOpen"}
ROW = re.compile(r"^\| `(?P<code>[a-z_]+)` \| `(?P<type>[^`]+)` \| (?P<status>\d{3}) \| "
                 r"(?P<title>[^|]+?) \|")


def _python_files():
    for top in SOURCES:
        yield from (path for path in (ROOT / top).rglob("*.py") if "migrations" not in path.parts)


def _literal(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _literals(node):
    """The str constants an expression can give: ``"x"``, ``a or "x"``, ``"x" if c else "y"``;
    None stands for a value computed at run time."""
    if isinstance(node, ast.BoolOp):
        return {value for operand in node.values for value in _literals(operand)}
    if isinstance(node, ast.IfExp):
        return _literals(node.body) | _literals(node.orelse)
    return {_literal(node)}


def _module_strings(relative_path, names=None):
    """The str constants assigned at the top of a module (those in ``names``, or every
    UPPER_CASE one)."""
    tree = ast.parse((ROOT / relative_path).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper() and (
                    names is None or target.id in names) and _literal(node.value):
                found.add(_literal(node.value))
    return found


def codes_the_source_can_produce():
    """Read from the source, not from the table: error classes' ``code``, every ``code=``
    given to an error, the codes the gateway's HTTP layer answers with, and the decided
    reasons a refused capture or refund carries as its code (services/payments/lifecycle.py)."""
    codes = set()
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if not isinstance(statement, ast.Assign):
                        continue
                    for target in statement.targets:
                        if isinstance(target, ast.Name) and target.id == "code":
                            codes.add(_literal(statement.value))
                        if isinstance(target, ast.Tuple) and isinstance(statement.value,
                                                                        ast.Tuple):
                            for name, value in zip(target.elts, statement.value.elts):
                                if isinstance(name, ast.Name) and name.id == "code":
                                    codes.add(_literal(value))
            if isinstance(node, ast.Call):
                callee = getattr(node.func, "id", getattr(node.func, "attr", None))
                for keyword in node.keywords:
                    if keyword.arg == "code" and callee in ERROR_CLASSES:
                        codes |= _literals(keyword.value)
                if callee == "problem_response" and len(node.args) >= 2:
                    codes |= _literals(node.args[1])
    codes |= set(http.HTTP_ERROR_CODES.values())
    # A refused capture or refund: ``code=operation.failure_reason or "operation_refused"``.
    # Every reason constant of the validators' and the ledger's rules (an account status,
    # "active", is not one).
    codes |= (_module_strings("services/validator/rules.py")
              | _module_strings("services/ledger/rules.py")) - {"active"}
    codes |= _module_strings("services/transactions/quorum.py", {"NO_QUORUM"})
    codes |= _module_strings("services/payments/lifecycle.py", {"HOLD_NOT_ACTIVE"})
    codes.add("decision_timeout")  # services/transactions/overdue.py, in its SQL
    codes.discard(None)  # a code computed at run time: the reasons above
    return codes


def documented_rows():
    text = (ROOT / "docs" / "errors.md").read_text()
    return {match["code"]: match.groupdict()
            for match in map(ROW.match, text.splitlines()) if match}


def test_the_scan_finds_the_codes_raised_in_services_and_the_gateway():
    produced = codes_the_source_can_produce()
    # One of each kind the scan reads, so a scan that silently finds nothing fails here.
    assert {"not_found", "email_taken", "circuit_open", "method_not_allowed",
            "unsupported_media_type", "insufficient_funds", "hold_not_active",
            "no_quorum"} <= produced


def test_every_code_the_source_can_produce_is_in_docs_errors_md_and_nothing_else():
    produced = codes_the_source_can_produce()
    documented = set(documented_rows())
    assert produced - documented == set(), "codes docs/errors.md does not list"
    assert documented - produced == set(), "codes docs/errors.md lists that nothing produces"


def test_docs_errors_md_gives_each_code_the_type_status_and_title_the_gateway_answers():
    rows = documented_rows()
    assert set(rows) == set(problems.BY_CODE)
    for code, problem in problems.BY_CODE.items():
        assert (rows[code]["type"], int(rows[code]["status"]), rows[code]["title"]) == (
            problem.type, problem.status, problem.title)


def test_each_code_has_its_own_type_and_none_is_about_blank():
    types = [problem.type for problem in problems.PROBLEM_TYPES]
    assert len(types) == len(set(types))
    assert all(t == "/problems/" + p.code for t, p in zip(types, problems.PROBLEM_TYPES))


def test_titles_are_in_sentence_case():
    for problem in problems.PROBLEM_TYPES:
        first, *rest = problem.title.split()
        assert first[0].isupper(), problem
        # Later words are lower case, but for names written so (Idempotency-Key, JSON).
        assert all(word.islower() or word in ("Idempotency-Key", "JSON") for word in rest), \
            problem


@pytest.mark.parametrize("error", [
    errors.NotFound("No such account."),
    errors.NotFound("No such user.", code="not_found"),
    errors.ValidationFailed("bad", errors={"amount": ["x"]}),
    errors.Conflict("taken", code="email_taken"),
    errors.Unauthorized("expired", code="token_expired"),
])
def test_a_problem_answer_carries_its_codes_type_and_title(error):
    body = parse(http.response_for_error(error).get_data())
    problem = problems.BY_CODE[error.code]
    assert (body["type"], body["title"], body["status"], body["code"]) == (
        problem.type, problem.title, error.status, error.code)


def test_the_routers_404_and_a_services_404_have_the_same_title():
    routed = parse(http.response_for_error(WerkzeugNotFound()).get_data())
    raised = parse(http.response_for_error(errors.NotFound("No such payment.")).get_data())
    assert routed["title"] == raised["title"] == "Not found"
    assert routed["type"] == raised["type"] == "/problems/not_found"


def test_every_401_challenges_for_a_bearer_token():
    no_token = http.response_for_error(errors.Unauthorized("Send a token."))
    wrong_password = http.response_for_error(
        errors.Unauthorized("Wrong.", code="invalid_credentials"))
    expired = http.response_for_error(errors.Unauthorized("Expired.", code="token_expired"))
    assert no_token.headers["WWW-Authenticate"] == 'Bearer realm="paysys"'
    assert wrong_password.headers["WWW-Authenticate"] == 'Bearer realm="paysys"'
    assert expired.headers["WWW-Authenticate"] == 'Bearer realm="paysys", error="invalid_token"'


def test_each_code_has_a_page_its_type_resolves_to():
    page = problems.page(problems.BY_CODE["insufficient_funds"])
    assert "insufficient_funds" in page and "422" in page and "Insufficient funds" in page
    assert all(p.type in problems.index() for p in problems.PROBLEM_TYPES)


def _request(body, headers, raw_headers=True):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    environ = EnvironBuilder(method="POST", data=body, headers=headers).get_environ()
    if raw_headers:  # as eventlet's server gives it, with its text/plain default
        environ["headers_raw"] = tuple(headers.items())
        environ.setdefault("CONTENT_TYPE", "text/plain")
    return Request(environ)


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"},
                                     {"Content-Type": "application/x-www-form-urlencoded"}])
def test_a_body_sent_as_anything_but_json_is_415(headers):
    from gateway import inputs
    from gateway.routes import BY_OPERATION

    with pytest.raises(errors.UnsupportedMediaType):
        inputs.load_body(BY_OPERATION["create_account"], _request(b'{"currency": "USD"}',
                                                                  headers))


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json; charset=utf-8"},
                                     {"Content-Type": "application/merge-patch+json"}])
def test_a_json_body_is_read_when_it_says_json_or_says_nothing(headers):
    from gateway import inputs
    from gateway.routes import BY_OPERATION

    loaded = inputs.load_body(BY_OPERATION["create_account"],
                              _request(b'{"currency": "USD"}', headers))
    assert loaded == {"currency": "USD"}
