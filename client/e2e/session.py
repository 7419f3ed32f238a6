"""End-to-end encryption on a ChatClient: keys, pins, sealing, opening, linking, local store.

E2ESession attaches to a ChatClient (ChatClient.attach_e2e) and then

- opens every encrypted message the client receives (live, replay, history),
  checks the sender's key against its pin and keeps the plaintext in the local
  store (client/e2e/localstore.py);
- sends private messages encrypted (send_private) when both accounts have keys,
  refusing with KeyChanged when the peer's key is not the pinned one, and with
  NoPeerKeys when the peer has none (the caller then says so and may send plainly),
  and with NoSuchUser when there is no such account (nothing is sent);
- publishes the account's public keys (publish), and links devices (the new one:
  start_link / its LinkWaiting; the old one: fetch_link, then confirm_link).

Blocking calls (lookup, publish, send_private, fetch_link) wait for the
server's answer up to a deadline; call them from a UI's worker or input
thread, never from the client's I/O thread. Results of linking on the new
device arrive as an E2ENotice on ChatClient.events.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from nacl.public import PrivateKey

from parley_chat.protocol import (
    MAX_ENVELOPE_CHARS,
    Error,
    ErrorCode,
    Keys,
    KeysGet,
    KeysPut,
    Link,
    LinkOp,
    LocalProtocolError,
    Message,
    MessageKind,
    check_text,
    fold,
    valid_nick,
)

from ..connection import E2E_PLACEHOLDER, ChatClient
from .crypto import (
    AccountKeys,
    E2EError,
    PublicKeys,
    b64,
    check_link_mac,
    comparison_code,
    link_mac,
    new_link_code,
    open_envelope,
    safety_number,
    seal,
    split_link_code,
    unb64,
    unwrap_on_device,
    wrap_for_device,
)
from .localstore import LocalStore
from .pins import KeyChanged, PinStore

log = logging.getLogger(__name__)

#: How long a blocking call waits for the server.
DEFAULT_WAIT = 10.0


class NoPeerKeys(E2EError):
    """The peer has published no keys: a message to them cannot be end-to-end encrypted."""

    def __init__(self, nick: str) -> None:
        super().__init__(
            f"{nick} has no end-to-end encryption keys (an older client, or never logged in "
            "with one): messages to them are NOT end-to-end encrypted; the server can read them"
        )
        self.nick = nick


class NoSuchUser(E2EError):
    """There is no account by that nick: nothing can be sent to it, encrypted or not."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"no user named {nick}")
        self.nick = nick


class NotReady(E2EError):
    """This device has no usable account keys (not linked yet, or keys in conflict)."""


class KeysConflict(E2EError):
    """The server holds other keys for this account than this device has."""


@dataclass(frozen=True, slots=True)
class E2ENotice:
    """An end-to-end encryption event for the UI: `kind` is "linked", "link-failed",
    "key-changed" or "no-keys"; `text` says it in words."""

    kind: str
    text: str
    nick: str | None = None


@dataclass(slots=True)
class _Pending:
    """A request waiting for its answer frame (or an error)."""

    done: threading.Event
    frame: Keys | Link | None = None
    error: Error | None = None


@dataclass(frozen=True, slots=True)
class LinkStart:
    """What the new device shows while it waits to be linked."""

    code: str  #: type this on the device that has the keys
    comparison: str  #: both screens show this; compare before confirming there


class E2ESession:
    """End-to-end encryption for one account on one ChatClient (see the module docstring).

    *keys*: the account's keys, or None when this device has none yet. *pins*:
    the peers' pinned keys. *local*: the local store of decrypted messages (or
    None: opened lazily by *local_factory* once keys exist). *on_keys*: called
    with the keys when linking gives this device keys, to save them.
    """

    def __init__(
        self,
        client: ChatClient,
        keys: AccountKeys | None,
        pins: PinStore,
        local: LocalStore | None = None,
        *,
        local_factory: Callable[[AccountKeys], LocalStore] | None = None,
        on_keys: Callable[[AccountKeys], None] | None = None,
    ) -> None:
        self.client = client
        self.pins = pins
        self._keys = keys
        self._local = local
        self._local_factory = local_factory
        self._on_keys = on_keys
        self._lock = threading.Lock()
        self._tags = itertools.count(1)
        self._waiting: dict[str, _Pending] = {}  # tag, "put", "link:<code>" -> waiter
        self._device: tuple[PrivateKey, str, str] | None = None  # new device: key, id, secret
        self._fetched: dict[str, tuple[str, bytes]] = {}  # old device: id -> (secret, device key)
        self.conflict = False  #: the server holds other keys for this account
        if keys is not None and local is None and local_factory is not None:
            self._local = local_factory(keys)
        client.attach_e2e(self)

    # --- state ------------------------------------------------------------------------

    @property
    def keys(self) -> AccountKeys | None:
        """The account's keys on this device (None: not linked yet)."""
        return self._keys

    @property
    def ready(self) -> bool:
        """Whether this device can send end-to-end encrypted messages."""
        return self._keys is not None and not self.conflict

    @property
    def local(self) -> LocalStore | None:
        """The local store of decrypted private messages (None until there are keys)."""
        return self._local

    def detach(self) -> None:
        """Stop end-to-end encryption on this client (encrypted messages show a placeholder)."""
        self.client.attach_e2e(None)

    @property
    def attached(self) -> bool:
        """Whether this session is the client's end-to-end encryption."""
        return self.client.e2e is self

    def _adopt(self, keys: AccountKeys) -> None:
        # Saved first: keys that could not be kept are not used (nor published).
        if self._on_keys is not None:
            self._on_keys(keys)
        self._keys = keys
        if self._local is None and self._local_factory is not None:
            self._local = self._local_factory(keys)

    def unlock(self, keys: AccountKeys) -> None:
        """Use *keys*, read from this device's own key file after the session was
        made without them (a passphrase typed later); nothing is written."""
        self._keys = keys
        if self._local is None and self._local_factory is not None:
            self._local = self._local_factory(keys)

    def adopt(self, keys: AccountKeys) -> None:
        """Use *keys* on this device from now on (imported from an export file); saved."""
        self._adopt(keys)
        self.conflict = False

    # --- the key directory ------------------------------------------------------------

    def _wait(self, key: str, send: Callable[[], None], timeout: float) -> _Pending:
        pending = _Pending(threading.Event())
        with self._lock:
            self._waiting[key] = pending
        send()
        if not pending.done.wait(timeout):
            with self._lock:
                self._waiting.pop(key, None)
            raise E2EError("the server did not answer in time")
        return pending

    def lookup(self, nick: str, timeout: float = DEFAULT_WAIT) -> PublicKeys | None:
        """*nick*'s published keys (signature verified), or None when they have none;
        NoSuchUser when there is no such account."""
        if not valid_nick(nick):  # a typed "/safety x y": said, not a frame that fails to build
            raise E2EError(f"{nick!r} is not a nick (1 to 24 letters, digits, '_' or '-')")
        tag = f"e2e{next(self._tags)}"
        pending = self._wait(tag, lambda: self.client.request(KeysGet(nick=nick, tag=tag)), timeout)
        frame = pending.frame
        assert isinstance(frame, Keys)
        if frame.no_account:
            raise NoSuchUser(nick)
        if frame.sign is None or frame.box is None or frame.sig is None:
            return None
        return PublicKeys.from_wire(frame.sign, frame.box, frame.sig)

    def publish(self, *, replace: bool = False, timeout: float = DEFAULT_WAIT) -> None:
        """Publish this device's account keys. KeysConflict when the server holds others."""
        if self._keys is None:
            raise NotReady("this device has no keys to publish")
        wire = self._keys.public.to_wire()
        pending = self._wait(
            "put", lambda: self.client.request(KeysPut(**wire, replace=replace)), timeout
        )
        if pending.error is not None:
            self.conflict = True
            raise KeysConflict(pending.error.message)
        self.conflict = False

    def start(self, timeout: float = DEFAULT_WAIT) -> str:
        """Settle this device's keys with the server's directory; returns what happened:

        "published" (keys made or first published), "ready" (the same keys are
        published), "unlinked" (the account has keys elsewhere: link this device),
        "conflict" (the server holds other keys than this device).
        """
        me = self.client.nick
        published = self.lookup(me, timeout)
        if self._keys is None:
            if published is not None:
                return "unlinked"
            self._adopt(AccountKeys.generate())
            self.publish(timeout=timeout)
            return "published"
        if published is None:
            self.publish(timeout=timeout)
            return "published"
        if not published.same_as(self._keys.public):
            self.conflict = True
            return "conflict"
        return "ready"

    def peer_keys(self, nick: str, timeout: float = DEFAULT_WAIT) -> PublicKeys | None:
        """*nick*'s current keys, checked against the pin (pinned on first contact).

        None when they have none; KeyChanged when they differ from the pin;
        NoSuchUser when there is no such account.
        """
        found = self.lookup(nick, timeout)
        if found is not None:
            self.pins.check(nick, found)
        return found

    def accept(self, nick: str, timeout: float = DEFAULT_WAIT) -> PublicKeys:
        """Accept *nick*'s current published key (after a KeyChanged): pin it."""
        found = self.lookup(nick, timeout)
        if found is None:
            raise NoPeerKeys(nick)
        self.pins.accept(nick, found)
        return found

    def safety_number(self, nick: str, timeout: float = DEFAULT_WAIT) -> str:
        """The 60-digit safety number of this account and *nick* (their pinned key)."""
        if self._keys is None:
            raise NotReady("this device has no keys yet")
        theirs = self.pins.get(nick)
        if theirs is None:
            theirs = self.peer_keys(nick, timeout)
            if theirs is None:
                raise NoPeerKeys(nick)
        return safety_number(
            fold(self.client.nick), self._keys.public.sign, fold(nick), theirs.sign
        )

    # --- messages ---------------------------------------------------------------------

    def seal_for(self, to: str, text: str, timeout: float = DEFAULT_WAIT) -> str:
        """The envelope of *text* to *to* (checks the pin); raises instead of sending plainly."""
        keys = self._keys
        if keys is None or self.conflict:
            raise NotReady(
                "this device cannot encrypt yet: link it from a device that has your keys "
                "(/link), or import your exported key file"
            )
        try:
            check_text(text)  # the rule of a plain send: blank, controls, not Unicode, length
        except LocalProtocolError as exc:
            raise E2EError(exc.message) from exc
        if len(text) > self.client.max_text:
            # The server cannot count what it cannot read: its text limit is kept here.
            raise E2EError(f"the message is over {self.client.max_text} characters")
        theirs = self.peer_keys(to, timeout)
        if theirs is None:
            raise NoPeerKeys(to)
        envelope = seal(keys, self.client.nick, to, theirs, text)
        if len(envelope) > MAX_ENVELOPE_CHARS:
            raise E2EError("the message is too long to send encrypted; split it")
        return envelope

    def send_private(self, to: str, text: str, timeout: float = DEFAULT_WAIT) -> str:
        """Send *text* to *to* end-to-end encrypted; its client id. Nothing is sent on
        NoPeerKeys, NoSuchUser, KeyChanged, NotReady or any other E2EError."""
        return self.client.send_envelope(to, self.seal_for(to, text, timeout))

    def open(self, m: Message) -> tuple[Message, str | None]:
        """ChatClient hook: *m* decrypted, or a placeholder and the reason (I/O thread)."""
        keys = self._keys
        me = self.client.nick
        try:
            if m.e2e is None or m.from_ is None or m.to is None:
                raise E2EError("an encrypted message without its sender or recipient")
            if keys is None:
                raise NotReady("this device has no keys yet (link it to read these)")
            opened = open_envelope(keys, me, m.e2e, m.from_, m.to)
            sender = PublicKeys(opened.sender_sign, opened.sender_box, b"")
            if fold(m.from_) == fold(me):
                if not sender.same_as(keys.public):
                    raise E2EError("sent with keys that are not this account's")
            else:
                try:
                    self.pins.check(m.from_, sender)
                except KeyChanged as exc:
                    self.client.emit(E2ENotice("key-changed", str(exc), m.from_))
                    raise E2EError(
                        f"sent with a key that is not {m.from_}'s pinned one (not shown)"
                    ) from exc
        except E2EError as exc:
            return replace(m, text=E2E_PLACEHOLDER, e2e=None), str(exc)
        local = self._local
        if local is not None:
            local.add(m.id, m.ts, m.from_, m.to, opened.text)
        return replace(m, text=opened.text, e2e=None), None

    def preview(self, message_id: int) -> str | None:
        """ChatClient hook: the decrypted text of *message_id* from the local store."""
        local = self._local
        found = local.get(message_id) if local is not None else None
        return found.text if found is not None else None

    def search_local(self, words: str, limit: int = 50) -> list[Message]:
        """Private messages on this device that hold every word (newest first)."""
        local = self._local
        if local is None:
            return []
        return [
            Message(
                id=h.id,
                ts=h.ts,
                kind=MessageKind.PRIVATE,
                text=h.text,
                from_=h.sender,
                to=h.recipient,
            )
            for h in local.search(words, limit)
        ]

    # --- linking: the new device ----------------------------------------------------------

    def start_link(self) -> LinkStart:
        """On the new device: offer to be linked; show the code and comparison code.

        The keys arrive later: an E2ENotice "linked" (or "link-failed") on
        ChatClient.events, and `keys` is set.
        """
        code = new_link_code()
        code_id, secret = split_link_code(code)
        device = PrivateKey.generate()
        pub = bytes(device.public_key)
        self._device = (device, code_id, secret)
        self.client.request(
            Link(op=LinkOp.OFFER, code=code_id, pub=b64(pub), mac=b64(link_mac(secret, pub)))
        )
        return LinkStart(code, comparison_code(secret, pub))

    def _on_answer(self, frame: Link) -> None:
        device = self._device
        if device is None or frame.code != device[1]:
            return
        key, _, secret = device
        try:
            assert frame.pub is not None and frame.mac is not None and frame.box is not None
            one_time, sealed = unb64(frame.pub, 32, "key"), unb64(frame.box, None, "keys")
            check_link_mac(secret, unb64(frame.mac, 32, "mac"), one_time, sealed)
            keys = unwrap_on_device(key, one_time, sealed)
        except E2EError as exc:
            self.client.emit(E2ENotice("link-failed", f"linking failed: {exc}"))
            return
        try:
            self._adopt(keys)
        except E2EError as exc:
            self.client.emit(E2ENotice("link-failed", f"linking failed: {exc}"))
            return
        self._device = None
        self.conflict = False
        self.client.emit(
            E2ENotice("linked", "this device is linked: it has your end-to-end keys now")
        )

    # --- linking: the device that has the keys ----------------------------------------------

    def fetch_link(self, code: str, timeout: float = DEFAULT_WAIT) -> str:
        """On the old device: find the new device's offer for *code*; the comparison code.

        Raises E2EError for a wrong code (no such offer, or its MAC does not match).
        Nothing is sent to the new device until confirm_link().
        """
        if self._keys is None:
            raise NotReady("this device has no keys to give")
        code_id, secret = split_link_code(code)
        pending = self._wait(
            f"link:{code_id}",
            lambda: self.client.request(Link(op=LinkOp.FETCH, code=code_id)),
            timeout,
        )
        if pending.error is not None:
            raise E2EError(pending.error.message)
        frame = pending.frame
        assert isinstance(frame, Link) and frame.pub is not None and frame.mac is not None
        pub = unb64(frame.pub, 32, "device key")
        check_link_mac(secret, unb64(frame.mac, 32, "mac"), pub)
        self._fetched[code_id] = (secret, pub)
        return comparison_code(secret, pub)

    def confirm_link(self, code: str) -> None:
        """On the old device, after the user compared the codes: send the keys over."""
        keys = self._keys
        code_id, _ = split_link_code(code)
        found = self._fetched.pop(code_id, None)
        if keys is None or found is None:
            raise E2EError("fetch the link code first")
        secret, pub = found
        one_time, sealed = wrap_for_device(keys, pub)
        self.client.request(
            Link(
                op=LinkOp.ANSWER,
                code=code_id,
                pub=b64(one_time),
                mac=b64(link_mac(secret, one_time, sealed)),
                box=b64(sealed),
            )
        )

    # --- ChatClient hooks (I/O thread) ---------------------------------------------------------

    def on_frame(self, frame: Keys | Link) -> None:
        """A keys or link frame arrived: wake whoever waits for it."""
        if isinstance(frame, Link):
            if frame.op is LinkOp.ANSWER:
                self._on_answer(frame)
                return
            key = f"link:{frame.code}"
        elif frame.tag is not None:
            key = frame.tag
        elif fold(frame.nick) == fold(self.client.nick):
            key = "put"
        else:
            return
        with self._lock:
            pending = self._waiting.pop(key, None)
        if pending is not None:
            pending.frame = frame
            pending.done.set()

    def on_error(self, frame: Error) -> None:
        """An error arrived: a refused publish or link fails its waiter."""
        if frame.code == ErrorCode.KEYS_EXIST:
            key = "put"
        elif frame.code == ErrorCode.NO_SUCH_LINK:
            with self._lock:
                keys = [k for k in self._waiting if k.startswith("link:")]
            if not keys:
                return
            key = keys[0]
        else:
            return
        with self._lock:
            pending = self._waiting.pop(key, None)
        if pending is not None:
            pending.error = frame
            pending.done.set()
