# Tests for server/flood.py: the token bucket behind fakelag.

from parley_chat.server.flood import TokenBucket


def test_burst_then_rate():
    now = [0.0]
    bucket = TokenBucket(burst=3, rate=2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert abs(bucket.wait_time() - 0.5) < 1e-9
    now[0] = 0.5
    assert bucket.take() and not bucket.take()


def test_refill_never_exceeds_the_burst():
    now = [0.0]
    bucket = TokenBucket(burst=2, rate=100.0, clock=lambda: now[0])
    now[0] = 1000.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]
