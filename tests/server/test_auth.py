# Tests for server/auth.py: scrypt hashes, the login throttle, resume tokens.

import hashlib

from parley_chat.server.auth import LoginThrottle, PasswordHasher, RateWindow, new_token, token_hash


def test_hash_verifies_and_carries_its_parameters():
    hasher = PasswordHasher(n=2**4)
    stored = hasher.hash("correct horse")
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "8", "1")
    assert "correct horse" not in stored
    assert hasher.verify("correct horse", stored)
    assert not hasher.verify("wrong", stored)


def test_hashes_are_salted():
    hasher = PasswordHasher(n=2**4)
    assert hasher.hash("pw") != hasher.hash("pw")


def test_a_hash_made_at_another_cost_still_verifies():
    old = PasswordHasher(n=2**4).hash("pw")
    assert PasswordHasher(n=2**6).verify("pw", old)


def test_malformed_or_missing_hashes_never_verify():
    hasher = PasswordHasher(n=2**4)
    for stored in (None, "", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA==$AA=="):
        assert not hasher.verify("pw", stored)


def test_default_cost_is_the_owasp_minimum():
    hasher = PasswordHasher()
    assert (hasher.n, hasher.r, hasher.p) == (2**17, 8, 1)


def test_throttle_blocks_after_the_limit_and_releases_after_the_window():
    now = [0.0]
    throttle = LoginThrottle(max_failures=3, window=60.0, clock=lambda: now[0])
    key = ("alice", "10.0.0.1")
    for _ in range(3):
        assert throttle.allowed(key)
        throttle.failed(key)
    assert not throttle.allowed(key)
    assert 59.0 <= throttle.retry_after(key) <= 60.0
    assert throttle.allowed(("alice", "10.0.0.2")), "another address is not affected"
    now[0] = 61.0
    assert throttle.allowed(key)


def test_success_clears_failures():
    throttle = LoginThrottle(max_failures=2, window=60.0)
    key = ("bob", "1.2.3.4")
    throttle.failed(key)
    throttle.succeeded(key)
    throttle.failed(key)
    assert throttle.allowed(key)


def test_tokens_are_random_and_only_their_hash_is_kept():
    token, hashed = new_token()
    assert len(token) >= 40
    assert hashed == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert new_token()[0] != token


def test_attempts_in_flight_count_so_concurrent_guesses_cannot_exceed_the_limit():
    clock = [0.0]
    throttle = LoginThrottle(5, 300.0, clock=lambda: clock[0])
    key = ("alice", "10.0.0.9")
    # Sixteen guesses arrive at once: only five may go on to be hashed.
    reserved = [throttle.begin(key) for _ in range(16)]
    assert reserved.count(True) == 5
    for _ in range(5):
        throttle.failed(key)
    assert not throttle.begin(key)
    assert throttle.retry_after(key) == 300.0
    clock[0] = 300.1
    assert throttle.begin(key)


def test_a_released_or_successful_attempt_gives_its_slot_back():
    throttle = LoginThrottle(2, 300.0)
    key = ("bob", "10.0.0.9")
    assert throttle.begin(key) and throttle.begin(key)
    assert not throttle.begin(key)
    throttle.release(key)  # e.g. the account did not exist
    assert throttle.begin(key)
    throttle.succeeded(key)
    throttle.succeeded(key)
    assert throttle.allowed(key)


def test_rate_window_counts_events_per_key_and_forgets_them_after_the_window():
    clock = [0.0]
    window = RateWindow(3, 600.0, clock=lambda: clock[0])
    assert [window.take("10.0.0.9") for _ in range(4)] == [True, True, True, False]
    assert window.take("10.0.0.10"), "another address has its own count"
    window.give_back("10.0.0.9")  # the account creation did not happen after all
    assert window.take("10.0.0.9")
    assert window.retry_after("10.0.0.9") == 600.0
    clock[0] = 600.5
    assert window.take("10.0.0.9") and window.retry_after("10.0.0.9") == 0.0
