"""`--redis-url` -> a redis-py client, for each of the three topologies tusd-py runs on.

- `redis://[[user]:password@]host:port/db`, `rediss://...`, `unix://...`: one Redis (redis-py's
  own URL form and options);
- `redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master name>[/<db>][?options]`:
  the master that Sentinel names (redis-py's `Sentinel.master_for`); after a failover the
  next connection asks the sentinels again, and a connection to a demoted master fails
  (redis-py's `SentinelManagedConnection`) instead of writing to a replica;
- `redis+cluster://[[user]:password@]host1:7000,host2:7001[?options]`: a Redis Cluster
  (redis-py's `RedisCluster`, which follows MOVED/ASK and refreshes its slot map).

`rediss+sentinel://` and `rediss+cluster://` speak TLS (to the sentinels too). The user and
password are the data nodes'; options: `sentinel_username`, `sentinel_password` (Sentinel only),
`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs` (none, optional, required),
`ssl_check_hostname` (true/false), as redis-py names them.

Every client gets the same bounds: a call ends within about (1 + retries) x timeout plus a
short backoff when Redis is down or hung, so a request gets a prompt 503, never a hang.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

RETRIES = 1  # a call is tried again once after a connection error or timeout

RedisClient = aioredis.Redis | RedisCluster

_SSL_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"})
_SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})


def is_clustered(url: str) -> bool:
    """True for the Redis Cluster URL forms."""
    return urlsplit(url).scheme.endswith("+cluster")


def connect(url: str, *, timeout: float, retries: int = RETRIES) -> RedisClient:
    """A client for `url` (see the module docstring); it connects on first use."""
    bounds: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
    }
    scheme = urlsplit(url).scheme
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(url, bounds)
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, bounds)
    return aioredis.Redis.from_url(url, **bounds)


async def close(client: RedisClient) -> None:
    """Close the client, and under Sentinel also its connections to the sentinels."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def _parts(url: str, allowed: frozenset[str]) -> tuple[list[tuple[str, int]], dict[str, Any], list[str], dict[str, str]]:
    """(hosts, auth options, path segments, other options) of a multi-host URL."""
    split = urlsplit(url)
    userinfo, _, hostlist = split.netloc.rpartition("@")
    auth: dict[str, Any] = {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            auth["username"] = unquote(user)
        if password:
            auth["password"] = unquote(password)
    hosts = []
    for item in filter(None, hostlist.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Redis URL {_redact(url)}: {item!r} is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise ValueError(f"Redis URL {_redact(url)} names no host")
    options = dict(parse_qsl(split.query))
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"Redis URL {_redact(url)}: unknown option(s) {', '.join(sorted(unknown))}")
    return hosts, auth, [unquote(p) for p in split.path.split("/") if p], options


def _tls(scheme: str, options: dict[str, str]) -> dict[str, Any]:
    if not scheme.startswith("rediss"):
        if set(options) & _SSL_OPTIONS:
            raise ValueError("ssl_* options need a rediss+... URL")
        return {}
    tls: dict[str, Any] = {"ssl": True}
    for name in _SSL_OPTIONS & set(options):
        tls[name] = options[name].lower() in ("1", "true", "yes") if name == "ssl_check_hostname" else options[name]
    return tls


def _sentinel(url: str, bounds: dict[str, Any]) -> aioredis.Redis:
    hosts, auth, path, options = _parts(url, _SSL_OPTIONS | _SENTINEL_OPTIONS)
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"Redis URL {_redact(url)}: the path must be /<master name>[/<db>]")
    tls = _tls(urlsplit(url).scheme, options)
    sentinel_auth = {
        key: options[f"sentinel_{key}"] for key in ("username", "password") if f"sentinel_{key}" in options
    }
    sentinel_bounds = {key: value for key, value in bounds.items() if key != "decode_responses"}
    sentinel = Sentinel(hosts, sentinel_kwargs={**sentinel_bounds, **tls, **sentinel_auth}, **bounds, **tls, **auth)  # type: ignore[no-untyped-call]
    db = int(path[1]) if len(path) == 2 else 0
    master: aioredis.Redis = sentinel.master_for(path[0], redis_class=aioredis.Redis, db=db)
    return master


def _cluster(url: str, bounds: dict[str, Any]) -> RedisCluster:
    hosts, auth, path, options = _parts(url, _SSL_OPTIONS)
    if path and path != ["0"]:
        raise ValueError(f"Redis URL {_redact(url)}: a Redis Cluster has only database 0")
    nodes = [ClusterNode(host, port) for host, port in hosts]
    return RedisCluster(startup_nodes=nodes, **bounds, **_tls(urlsplit(url).scheme, options), **auth)


def _redact(url: str) -> str:
    split = urlsplit(url)
    userinfo, at, hosts = split.netloc.rpartition("@")
    return url.replace(split.netloc, f"{userinfo.partition(':')[0]}:***@{hosts}", 1) if at else url
