# DNS-SD/mDNS end to end: `python -m parley_chat.server` advertises itself, and a second
# process (`python -m parley_chat.client.cli --discover`) finds it, then connects to what
# it found. Nothing may reach a real network, so both processes run:
# - inside a network namespace this test creates (`ip netns add`, root), where
#   the only interface is a loopback with multicast switched on; or else
# - on this machine's loopback, when it already has MULTICAST, with the
#   server bound to 127.0.0.1 (it advertises only there, server/mdns.py) and
#   the browser told to use 127.0.0.1 only;
# and the test is skipped, saying why, where neither is possible. One more
# test checks the rule that keeps this safe: in a namespace with a stand-in
# LAN (a veth pair), a loopback-bound server and browser send nothing to it.

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley_chat.certs import fingerprint_sha256, generate, short_fingerprint

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def _loopback_has_multicast() -> bool:
    ip = shutil.which("ip")
    if ip is None:
        return False
    out = _run([ip, "link", "show", "lo"]).stdout
    return "MULTICAST" in out.split(">")[0]


@pytest.fixture(scope="module")
def isolated() -> Iterator[list[str]]:
    """A command prefix that runs a process where multicast stays on loopback."""
    ip = shutil.which("ip")
    reasons = []
    if ip is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
        name = f"parley-mdns-{uuid.uuid4().hex[:8]}"
        made = _run([ip, "netns", "add", name])
        if made.returncode == 0:
            try:
                for step in (["up"], ["multicast", "on"]):
                    done = _run([ip, "netns", "exec", name, ip, "link", "set", "lo", *step])
                    assert done.returncode == 0, done.stderr
                yield [ip, "netns", "exec", name]
            finally:
                _run([ip, "netns", "del", name])
            return
        reasons.append(f"`ip netns add` failed: {made.stderr.strip()}")
    else:
        reasons.append("creating a network namespace needs root and the ip command")
    if _loopback_has_multicast():
        yield []  # this machine's loopback, with both ends bound to 127.0.0.1
        return
    reasons.append("the loopback interface has no MULTICAST flag (`ip link set lo multicast on`)")
    pytest.skip("no isolated multicast network for the mDNS test: " + "; ".join(reasons))


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        "PARLEY_MDNS": "on",
        "PARLEY_MDNS_INTERFACES": "127.0.0.1",
        **extra,
    }


class Server:
    """`python -m parley_chat.server` in the isolated network, its output read line by line."""

    def __init__(self, prefix: list[str], args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "parley_chat.server", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(
                target=lambda s=stream, q=q: [q.put(line) for line in iter(s.readline, "")],
                daemon=True,
            ).start()

    def wait_line(self, q: queue.Queue[str], needle: str) -> str:
        deadline = time.monotonic() + DEADLINE
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = q.get(timeout=left)
            except queue.Empty:
                break
            seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} from the server in time; got {seen}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=DEADLINE)


def _cli(prefix: list[str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "parley_chat.client.cli", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
        env=_env(PARLEY_PASSWORD="secret-pw"),
    )


def test_a_second_process_finds_the_server_by_mdns_and_connects(
    isolated, certs_dir, ca_file, tmp_path
):
    db = f"sqlite:///{tmp_path / 'mdns.db'}"
    server = Server(
        isolated,
        ["--host", "127.0.0.1", "--port", "0", "--db", db, "--certs", str(certs_dir),
         "--scrypt-n", "16", "--log-level", "INFO"],
    )  # fmt: skip
    try:
        listening = server.wait_line(server.out, "parley listening on")
        port = int(listening.split()[3].rsplit(":", 1)[1])
        # The sign that the name is claimed and announced: the server logs it.
        server.wait_line(server.err, "advertised by mDNS as")
        found = _cli(isolated, "--discover", "--discover-wait", "3")
        assert found.returncode == 0, found.stderr
        rows = [line.split("\t") for line in found.stdout.splitlines()]
        ca_fp = fingerprint_sha256(ca_file.read_bytes())
        ours = [r for r in rows if r[0] == f"127.0.0.1:{port}"]
        assert ours, f"the server was not found: {found.stdout!r} {found.stderr!r}"
        where, name, fingerprint = ours[0]
        assert name.startswith("parley on ")
        assert fingerprint == short_fingerprint(ca_fp)  # advertised, shown, never trusted
        # What discovery found is an address to connect to, as the client does.
        host, _, found_port = where.rpartition(":")
        chat = _cli(
            isolated,
            "--host", host, "--port", found_port, "--ca", str(ca_file),
            "--nick", "finder", "--register",
            stdin="found you\n",
        )  # fmt: skip
        assert chat.returncode == 0, chat.stderr
    finally:
        server.stop()


def test_no_mdns_means_nothing_is_advertised(isolated, certs_dir, tmp_path):
    common = ["--port", "0", "--certs", str(certs_dir), "--scrypt-n", "16", "--log-level", "INFO"]
    quiet = Server(isolated, [*common, "--db", f"sqlite:///{tmp_path / 'q.db'}", "--no-mdns"])
    # The control: a server that does advertise, heard in the same listening window.
    loud = Server(isolated, [*common, "--db", f"sqlite:///{tmp_path / 'l.db'}"])
    try:
        quiet_port = quiet.wait_line(quiet.out, "parley listening on").split()[3].rsplit(":")[1]
        loud_port = loud.wait_line(loud.out, "parley listening on").split()[3].rsplit(":")[1]
        loud.wait_line(loud.err, "advertised by mDNS as")
        found = _cli(isolated, "--discover", "--discover-wait", "3")
        assert found.returncode == 0, found.stderr
        assert f"127.0.0.1:{loud_port}\t" in found.stdout, found.stdout
        assert f"127.0.0.1:{quiet_port}\t" not in found.stdout
    finally:
        quiet.stop()
        loud.stop()


@pytest.fixture
def netns_with_a_lan() -> Iterator[tuple[list[str], Path]]:
    """A namespace with loopback and a veth pair standing in for a LAN; yields the
    command prefix and the file counting the packets that reach the "LAN"."""
    ip = shutil.which("ip")
    if ip is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a test network namespace needs root and the ip command")
    name = f"parley-lan-{uuid.uuid4().hex[:8]}"
    if _run([ip, "netns", "add", name]).returncode != 0:
        pytest.skip("`ip netns add` is not possible here")
    prefix = [ip, "netns", "exec", name]
    try:
        steps = [
            ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            [ip, "link", "set", "lo", "up"],
            [ip, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"],
            [ip, "addr", "add", "10.99.0.1/24", "dev", "lan0"],
            [ip, "link", "set", "lan0", "up"],
            [ip, "link", "set", "lan1", "up"],
        ]
        for step in steps:
            done = _run([*prefix, *step])
            if done.returncode != 0:
                pytest.skip(f"cannot build the test LAN ({' '.join(step[:4])}): {done.stderr}")
        yield prefix, Path("/sys/class/net/lan1/statistics/rx_packets")
    finally:
        _run([ip, "netns", "del", name])


def _received(prefix: list[str], counter: Path) -> int:
    # /sys shows the namespace of the process reading it: read it from inside.
    return int(_run([*prefix, "cat", str(counter)]).stdout)


def test_a_loopback_server_and_a_loopback_browser_send_nothing_to_the_lan(
    netns_with_a_lan, certs_dir, tmp_path
):
    prefix, counter = netns_with_a_lan
    common = ["--port", "0", "--certs", str(certs_dir), "--scrypt-n", "16", "--log-level", "INFO"]
    before = _received(prefix, counter)
    local = Server(prefix, [*common, "--db", f"sqlite:///{tmp_path / 'lo.db'}"])
    try:
        local.wait_line(local.err, "advertised by mDNS as")
        found = _cli(prefix, "--discover", "--discover-wait", "2", "--mdns-interface", "127.0.0.1")
        assert found.returncode == 0, found.stderr
    finally:
        local.stop()  # its goodbye packets too
    assert _received(prefix, counter) == before
    # The control: a server bound to every interface does reach the "LAN" (its
    # certificate covers the LAN address, or it would not advertise at all).
    generate(tmp_path / "lan-certs", ["10.99.0.1"])
    wide = Server(
        prefix,
        [*common, "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path / 'w.db'}",
         "--certs", str(tmp_path / "lan-certs")],
    )  # fmt: skip
    try:
        # Logged once zeroconf has probed for the name and announced it.
        wide.wait_line(wide.err, "advertised by mDNS as")
        assert _received(prefix, counter) > before
    finally:
        wide.stop()
