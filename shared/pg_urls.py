"""PostgreSQL URLs with several hosts, as libpq writes them and as SQLAlchemy reads them.

config.yml and every psycopg2 caller use libpq's own form, which lists the hosts of a
primary and its standbys in the netloc and lets libpq find the one that takes writes:

    postgresql://user@127.0.0.1:5441,127.0.0.1:5442/paysys?target_session_attrs=read-write

SQLAlchemy's URL parser takes one host and port; it spells the same list as repeated
``host`` query parameters (``postgresql+psycopg2://user@/paysys?host=h1:p1&host=h2:p2``),
which its psycopg2 dialect hands back to libpq as ``host=h1,h2 port=p1,p2``.
"""
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

READ_WRITE = "read-write"


def split_netloc(netloc):
    """``(userinfo or "", ["host:port", …])`` of a libpq URL's netloc."""
    userinfo, _, hosts = netloc.rpartition("@")
    return userinfo, [host for host in hosts.split(",") if host]


def is_multi_host(url):
    return len(split_netloc(urlsplit(url).netloc)[1]) > 1


def hosts_of(url):
    """The ``host:port`` entries of a libpq URL, as written."""
    return split_netloc(urlsplit(url).netloc)[1]


def multi_host_url(url, hosts):
    """``url`` (user, password, database, parameters kept) pointed at ``hosts``
    (``["127.0.0.1:5442", …]``), asking libpq for the one that takes writes: after a
    failover a new connection reaches the new primary."""
    parts = urlsplit(url)
    userinfo, _ = split_netloc(parts.netloc)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
             if key != "target_session_attrs"]
    query.append(("target_session_attrs", READ_WRITE))
    netloc = (userinfo + "@" if userinfo else "") + ",".join(hosts)
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def sqlalchemy_form(url):
    """A multi-host libpq URL as SQLAlchemy parses it (hosts as ``host`` parameters); a
    one-host URL unchanged."""
    parts = urlsplit(url)
    userinfo, hosts = split_netloc(parts.netloc)
    if len(hosts) < 2:
        return url
    query = [("host", host) for host in hosts] + parse_qsl(parts.query,
                                                           keep_blank_values=True)
    # Written out: urlunsplit drops the "//" of an empty netloc, which SQLAlchemy needs.
    return "{}://{}{}?{}".format(parts.scheme, userinfo + "@" if userinfo else "",
                                 parts.path, urlencode(query))


def with_password_masked(url, mask):
    """``url`` with its password (if any) replaced by ``mask``; works with several hosts
    (``urlsplit(...).port`` does not)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc="{}:{}@{}".format(user, mask, hosts)))


def user_of(url):
    userinfo, _ = split_netloc(urlsplit(url).netloc)
    return unquote(userinfo.split(":", 1)[0]) if userinfo else ""


def database_of(url):
    return unquote(urlsplit(url).path.lstrip("/"))
