import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from klikkflow.kit.embedded import redis_spec
from klikkflow.kit.ratelimit import Decision, Lockout, RateLimiter, ip_key
from klikkflow.kit.stores import create_redis
from klikkflow.kit.supervisor import Supervisor, free_port


@pytest.fixture(scope="module")
async def redis_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    supervisor = Supervisor(tmp_path_factory.mktemp("ratelimit") / "logs")
    spec, url = redis_spec(free_port(), None)
    try:
        await supervisor.start(spec)
        await supervisor.wait_ready(timeout=30)
        yield url
    finally:
        await supervisor.stop_all(grace=5)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.flushdb()
    await client.aclose()


async def assert_every_key_expires(redis: Redis) -> None:
    keys = [key async for key in redis.scan_iter("klikkflow:*")]
    assert keys
    ttls = {key: await redis.pttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_the_limit_is_reached_exactly_at_the_nth_hit(redis: Redis) -> None:
    limiter = RateLimiter(redis, "login", limit=3, window_seconds=60)

    decisions = [await limiter.hit("ada@example.com") for _ in range(4)]

    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert decisions[0].retry_after == 0
    assert 59 < decisions[3].retry_after <= 60


async def test_the_window_slides_instead_of_resetting(redis: Redis) -> None:
    limiter = RateLimiter(redis, "login", limit=2, window_seconds=1)
    assert (await limiter.hit("ada")).allowed
    await asyncio.sleep(0.5)
    assert (await limiter.hit("ada")).allowed

    refused = await limiter.hit("ada")
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.5  # when the first hit leaves the window

    await asyncio.sleep(refused.retry_after + 0.05)
    assert await limiter.hit("ada") == Decision(allowed=True, remaining=0, retry_after=0)
    # The second hit is still inside the window: a fixed window would allow this one.
    assert not (await limiter.hit("ada")).allowed


async def test_keys_and_limiter_names_are_independent(redis: Redis) -> None:
    by_email = RateLimiter(redis, "login", limit=1, window_seconds=60)
    by_ip = RateLimiter(redis, "login-ip", limit=1, window_seconds=60)
    assert (await by_email.hit("ada@example.com")).allowed
    assert not (await by_email.hit("ada@example.com")).allowed

    assert (await by_email.hit("grace@example.com")).allowed
    assert (await by_ip.hit("ada@example.com")).allowed


async def test_concurrent_hits_from_many_connections_allow_exactly_the_limit(
    redis: Redis,
) -> None:
    limiter = RateLimiter(redis, "token", limit=10, window_seconds=60)

    decisions = await asyncio.gather(*(limiter.hit("client") for _ in range(50)))

    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))
    assert await redis.zcard(limiter.redis_key("client")) == 10  # refused hits not kept


async def test_limiter_keys_expire_with_the_window(redis: Redis) -> None:
    limiter = RateLimiter(redis, "password-reset", limit=2, window_seconds=30)
    for _ in range(3):
        await limiter.hit("ada@example.com")

    await assert_every_key_expires(redis)
    assert 29_000 < await redis.pttl("klikkflow:rl:password-reset:ada@example.com") <= 30_000


async def test_a_reset_clears_the_limit(redis: Redis) -> None:
    limiter = RateLimiter(redis, "login", limit=1, window_seconds=60)
    await limiter.hit("ada")
    await limiter.reset("ada")
    assert (await limiter.hit("ada")).allowed


async def test_lockout_starts_after_the_free_failures_doubles_and_caps(redis: Redis) -> None:
    lockout = Lockout(redis, "login", free_failures=3, base_seconds=1, max_seconds=8)

    locks = [await lockout.fail("ada@example.com") for _ in range(9)]

    assert locks == [0, 0, 0, 1, 2, 4, 8, 8, 8]
    assert 7.5 < await lockout.check("ada@example.com") <= 8
    assert await lockout.check("grace@example.com") == 0


async def test_lockout_ends_when_its_time_is_up(redis: Redis) -> None:
    lockout = Lockout(redis, "login", free_failures=1, base_seconds=0.2, max_seconds=10)
    assert await lockout.fail("ada") == 0
    assert await lockout.check("ada") == 0
    assert await lockout.fail("ada") == pytest.approx(0.2)

    await asyncio.sleep(0.25)

    assert await lockout.check("ada") == 0
    assert await lockout.fail("ada") == pytest.approx(0.4)  # the count was kept


async def test_a_success_clears_the_lockout(redis: Redis) -> None:
    lockout = Lockout(redis, "login", free_failures=2, base_seconds=1, max_seconds=60)
    for _ in range(4):
        await lockout.fail("ada")
    assert await lockout.check("ada") > 0

    await lockout.succeed("ada")

    assert await lockout.check("ada") == 0
    assert [await lockout.fail("ada") for _ in range(3)] == [0, 0, 1]


async def test_concurrent_failures_are_all_counted(redis: Redis) -> None:
    lockout = Lockout(redis, "login", free_failures=5, base_seconds=1, max_seconds=900)

    locks = await asyncio.gather(*(lockout.fail("ada") for _ in range(8)))

    assert sorted(locks) == [0, 0, 0, 0, 0, 1, 2, 4]


async def test_lockout_state_expires_after_twice_the_longest_lock(redis: Redis) -> None:
    lockout = Lockout(redis, "login", free_failures=0, base_seconds=1, max_seconds=900)
    await lockout.fail("ada")

    await assert_every_key_expires(redis)
    assert 1_799_000 < await redis.pttl("klikkflow:lockout:login:ada") <= 1_800_000


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ],
)
def test_ipv6_clients_are_keyed_by_their_64_prefix(address: str, key: str) -> None:
    assert ip_key(address) == key


@pytest.mark.parametrize(
    ("limit", "window"),
    [(0, 60), (5, 0)],
)
def test_a_limiter_that_could_never_allow_anything_is_refused(
    redis: Redis, limit: int, window: float
) -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        RateLimiter(redis, "login", limit=limit, window_seconds=window)
