"""A loopback TCP proxy that breaks the connection on cue, for fault-injection tests.

Killing a cache server tests one failure only, and at a moment the test cannot
choose: the process dies whenever the signal lands. Real networks also stall
(a half-dead load balancer, a full conntrack table), reset connections (a
failover, an idle timeout on a firewall) and hand back bytes that are not the
protocol (a TLS terminator in the way, a corrupted buffer). This proxy sits
between cachectl and a real server and does each of these, either at once or at
an exact point of the exchange: after N commands of the client (optionally only
commands of some names, so "the fifth SCAN step" is the same point on every
run, whatever handshake the client library sends first) or after N bytes of the
server's replies, so the fault lands in the middle of a long operation on every
run instead of by luck.

Stdlib only: one thread runs a ``selectors`` loop over non-blocking sockets, so
no direction can block another (a client still writing a big pipeline while
the server already answers would deadlock a proxy that forwards with blocking
``sendall``). Other threads talk to the loop through a queue and wait for it to
act, so when ``stall()`` returns the proxy is stalled.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

#: What a corrupted reply looks like: a NUL and a 0xff no cache protocol starts a
#: reply with, then text a line-based client will read as one (wrong) line.
JUNK = b"\x00\xffGARBAGE\r\n"

#: How the proxy tells the client's commands apart (needed for command triggers).
Protocol = Literal["resp", "memcached", "raw"]

_RECV_SIZE = 65536
#: How long a caller waits for the loop thread to carry out a switch.
_CONTROL_TIMEOUT = 10.0


class Fault(enum.Enum):
    """What the proxy does to the connections once a fault is on."""

    #: Forward nothing in either direction and read nothing (so the peers' TCP
    #: windows fill), but keep every socket open: the client sees silence and
    #: only its own timeout can end the wait. New connections are accepted and
    #: stalled too.
    STALL = "stall"
    #: Close every client connection with a TCP RST (SO_LINGER 0), as a
    #: failover or a firewall dropping state does; new connections are reset as
    #: soon as they are accepted.
    RESET = "reset"
    #: Replace the server's reply bytes from the fault on with ``JUNK``, sent once
    #: per connection, and swallow every later reply byte (the connection stays
    #: open). Swallowing rather than passing the rest on keeps the outcome
    #: independent of how the server's bytes happened to be split into segments:
    #: a client that ignores the junk still meets silence, never replies shifted
    #: by one. The client's commands keep flowing to the server, which runs them.
    GARBAGE = "garbage"
    #: Pass the server's replies on one byte at a time, ``dribble_interval`` seconds
    #: apart (0.4 s unless the proxy was given another): every read of the client
    #: gets a byte well within a socket timeout of a second, while a whole reply
    #: takes its length times the interval. Commands flow to the server as usual.
    DRIBBLE = "dribble"


# --- telling commands apart -----------------------------------------------------------


class CommandSplitter:
    """Cuts the client's byte stream into whole commands, named, for counting."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The commands ``data`` completes, as ``(NAME, raw bytes)``; an incomplete
        tail waits for the next call. Names are upper-case."""
        self._buffer += data
        commands: list[tuple[bytes, bytes]] = []
        position = 0
        while position < len(self._buffer):
            parsed = self._parse_one(position)
            if parsed is None:
                break
            name, end = parsed
            commands.append((name.upper(), bytes(self._buffer[position:end])))
            position = end
        del self._buffer[:position]
        return commands

    def _parse_one(self, start: int) -> tuple[bytes, int] | None:
        """``(name, end)`` of the command starting at ``start``, None if incomplete."""
        raise NotImplementedError


class RawSplitter(CommandSplitter):
    """No protocol knowledge: whatever one ``recv`` returned counts as one command,
    which depends on timing, so command triggers are refused for it."""

    def _parse_one(self, start: int) -> tuple[bytes, int] | None:
        return b"", len(self._buffer)


class RespSplitter(CommandSplitter):
    """Redis (RESP): a client sends arrays of bulk strings, or inline lines."""

    def _parse_one(self, start: int) -> tuple[bytes, int] | None:
        buffer = self._buffer
        line_end = buffer.find(b"\r\n", start)
        if buffer[start] != ord("*"):  # an inline command: one line
            line_end = buffer.find(b"\n", start)
            if line_end < 0:
                return None
            words = bytes(buffer[start:line_end]).split()
            return (words[0] if words else b""), line_end + 1
        if line_end < 0:
            return None
        count = int(buffer[start + 1 : line_end])
        position = line_end + 2
        name = b""
        for index in range(count):
            header_end = buffer.find(b"\r\n", position)
            if header_end < 0:
                return None
            if buffer[position] != ord("$"):
                raise ValueError(f"not a RESP bulk string: {bytes(buffer[position:header_end])!r}")
            length = int(buffer[position + 1 : header_end])
            body = header_end + 2
            if body + length + 2 > len(buffer):
                return None
            if index == 0:
                name = bytes(buffer[body : body + length])
            position = body + length + 2
        return name, position


class MemcachedSplitter(CommandSplitter):
    """memcached: text lines, where a storage command carries a data block; or the
    binary protocol (a 24-byte header with the body length)."""

    _STORAGE = frozenset({b"SET", b"ADD", b"REPLACE", b"APPEND", b"PREPEND", b"CAS"})
    _BINARY_MAGIC = 0x80

    def _parse_one(self, start: int) -> tuple[bytes, int] | None:
        buffer = self._buffer
        if buffer[start] == self._BINARY_MAGIC:
            if len(buffer) - start < 24:
                return None
            body = int.from_bytes(buffer[start + 8 : start + 12], "big")
            end = start + 24 + body
            return (b"BINARY-%02X" % buffer[start + 1], end) if end <= len(buffer) else None
        line_end = buffer.find(b"\n", start)
        if line_end < 0:
            return None
        words = bytes(buffer[start:line_end]).split()
        name = words[0].upper() if words else b""
        end = line_end + 1
        if name in self._STORAGE:
            end += int(words[4]) + 2  # <key> <flags> <exptime> <bytes>: the block and \r\n
            if end > len(buffer):
                return None
        return name, end


_SPLITTERS: dict[str, type[CommandSplitter]] = {
    "resp": RespSplitter,
    "memcached": MemcachedSplitter,
    "raw": RawSplitter,
}


# --- the proxy ------------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """A fault to switch on at an exact point of the traffic."""

    fault: Fault
    #: Let this many client commands through; the fault hits the next one. With
    #: STALL and RESET that command never reaches the server; with GARBAGE it
    #: does, and its reply is replaced.
    after_commands: int | None = None
    #: Count only commands of these (upper-case) names; others pass uncounted.
    only: frozenset[bytes] | None = None
    #: With ``after_commands``: the command the fault would hit reaches the server
    #: after all, and this many bytes of the replies that follow are let through
    #: before the fault hits. For a client that waits for each reply, that is a cut
    #: at a fixed offset of that command's reply (2: inside its RESP header).
    reply_bytes: int | None = None
    #: Let this many bytes of the server's replies through (over all connections),
    #: then fault in the middle of whatever reply is in flight.
    after_server_bytes: int | None = None


@dataclass(eq=False)
class _End:
    """One socket of a connection pair and the bytes waiting to be written to it."""

    sock: socket.socket
    outbox: bytearray = field(default_factory=bytearray)
    #: The selector events currently registered (0: not registered).
    events: int = 0


@dataclass(eq=False)
class _Pair:
    """A client connection and the proxy's own connection to the server for it."""

    client: _End
    upstream: _End
    splitter: CommandSplitter
    #: GARBAGE has hit this connection: the junk went out, later replies are swallowed.
    garbled: bool = False
    #: One side hung up; the pair closes once the other side's outbox is written.
    closing: bool = False
    #: Reply bytes held back while dribbling, and when the next one may go.
    held: bytearray = field(default_factory=bytearray)
    next_drip: float = 0.0


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target`` until told to fail.

    Use as a context manager. Faults are switched on at once (``stall()``,
    ``reset()``, ``garbage()``) or armed to hit at an exact point (``arm``);
    ``heal()`` drops every connection and forwards faithfully again.
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        protocol: Protocol = "raw",
        junk: bytes = JUNK,
        dribble_interval: float = 0.4,
    ) -> None:
        self.target = (target_host, target_port)
        self.protocol = protocol
        self.junk = junk
        self.dribble_interval = dribble_interval
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._controls: queue.Queue[tuple[Callable[[], object], _Reply]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pairs: set[_Pair] = set()
        self._mode: Fault | None = None
        self._trigger: Trigger | None = None
        self._matched = 0
        self._bytes_at_arm = 0
        #: Set once a fault has gone on (switched on, or an armed trigger reached),
        #: after its effect (the resets are sent): a client may see the effect
        #: first, so wait on it rather than poll it.
        self.fired = threading.Event()
        #: ``time.monotonic()`` when the last fault went on, to time the client's reaction.
        self.fired_at: float | None = None
        #: Client commands forwarded to the server, by name.
        self.commands: collections.Counter[bytes] = collections.Counter()
        #: Bytes of server replies forwarded to clients.
        self.server_bytes = 0
        #: Connections accepted since the start.
        self.connections = 0
        #: Faults switched on since the start (each stall, reset or garbage).
        self.faults_injected = 0
        #: Unexpected errors of the loop thread (a client speaking another protocol,
        #: a bug here); a test should find this empty.
        self.errors: list[str] = []

    # --- life cycle ---

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the address to give the client instead of the server's."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Listen and start forwarding (once: a stopped proxy is not restarted)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Port 0: the kernel picks a free port at bind time, so nothing can take it
        # between choosing and binding.
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        # Other threads wake the loop by writing a byte here (see _control).
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every socket and end the loop thread (idempotent)."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout=_CONTROL_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the proxy thread did not stop")
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- switches (any thread) ---

    def stall(self) -> None:
        """Stop forwarding now, in both directions, sockets left open."""
        self._control(lambda: self._fire(Fault.STALL))

    def reset(self) -> None:
        """Reset every client connection now, and every new one."""
        self._control(lambda: self._fire(Fault.RESET))

    def garbage(self) -> None:
        """Answer junk from now on (see ``Fault.GARBAGE``)."""
        self._control(lambda: self._fire(Fault.GARBAGE))

    def dribble(self) -> None:
        """Pass replies on a byte at a time from now on (see ``Fault.DRIBBLE``)."""
        self._control(lambda: self._fire(Fault.DRIBBLE))

    def arm(
        self,
        fault: Fault,
        *,
        after_commands: int | None = None,
        only: Collection[bytes] | None = None,
        reply_bytes: int | None = None,
        after_server_bytes: int | None = None,
    ) -> None:
        """Switch ``fault`` on at an exact point, counted from this call: after
        ``after_commands`` client commands (of the names in ``only``, if given; with
        ``reply_bytes``, that many bytes into the reply to the next one), or after
        ``after_server_bytes`` bytes of replies."""
        if (after_commands is None) == (after_server_bytes is None):
            raise ValueError("give exactly one of after_commands and after_server_bytes")
        if after_commands is not None and self.protocol == "raw":
            raise ValueError("counting commands needs protocol='resp' or 'memcached'")
        if reply_bytes is not None and after_commands is None:
            raise ValueError("reply_bytes applies to after_commands")
        names = frozenset(name.upper() for name in only) if only is not None else None
        trigger = Trigger(fault, after_commands, names, reply_bytes, after_server_bytes)

        def arm_now() -> None:
            self._trigger = trigger
            self._matched = 0
            self._bytes_at_arm = self.server_bytes
            self.fired.clear()

        self._control(arm_now)

    def heal(self) -> None:
        """Forward faithfully again: the fault and any armed trigger are dropped, and
        so is every existing connection (whatever state a fault left it in)."""

        def heal_now() -> None:
            self._mode = None
            self._trigger = None
            for pair in list(self._pairs):
                self._close(pair, abort=True)

        self._control(heal_now)

    # --- the loop thread ---

    def _wake(self) -> None:
        if self._wake_writer is not None:
            with contextlib.suppress(OSError):  # already closed: the loop is gone
                self._wake_writer.send(b"\0")

    def _control(self, action: Callable[[], object]) -> None:
        """Run ``action`` in the loop thread and wait until it has run."""
        if self._thread is None:
            raise RuntimeError("the proxy is not started")
        reply = _Reply()
        self._controls.put((action, reply))
        self._wake()
        if not reply.done.wait(_CONTROL_TIMEOUT):
            raise RuntimeError("the proxy thread did not answer")
        if reply.error is not None:
            raise reply.error

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select(timeout=self._next_wait()):
                    self._dispatch(key, mask)
                self._drip()
        except Exception as exc:  # kept for the test to see; the sockets still close
            self.errors.append(f"proxy loop: {type(exc).__name__}: {exc}")
        finally:
            self._shutdown()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "listener":
            self._accept()
        elif key.data == "wake":
            self._run_controls()
        else:
            pair, side = key.data
            if pair not in self._pairs:
                return  # closed by an earlier event of this round
            try:
                if mask & selectors.EVENT_WRITE:
                    self._flush(pair, side)
                if mask & selectors.EVENT_READ and pair in self._pairs:
                    if side == "client":
                        self._from_client(pair)
                    else:
                        self._from_server(pair)
            except (BlockingIOError, InterruptedError):
                pass  # not ready after all: the selector will say when
            except OSError:  # a peer reset or vanished: so does its pair
                if pair in self._pairs:
                    self._close(pair, abort=True)
            except Exception as exc:
                self.errors.append(f"{side}: {type(exc).__name__}: {exc}")
                if pair in self._pairs:
                    self._close(pair, abort=True)

    def _run_controls(self) -> None:
        assert self._wake_reader is not None
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                action, reply = self._controls.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            except Exception as exc:
                reply.error = exc
            reply.done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.connections += 1
        if self._mode is Fault.RESET:
            _abort_socket(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _abort_socket(client)  # the server is gone: the client sees a reset
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(_End(client), _End(upstream), _SPLITTERS[self.protocol]())
        self._pairs.add(pair)
        self._update(pair)

    def _from_client(self, pair: _Pair) -> None:
        data = pair.client.sock.recv(_RECV_SIZE)
        if not data:
            self._hang_up(pair, pair.upstream)
            return
        for name, raw in pair.splitter.feed(data):
            trigger = self._trigger
            counted = (
                trigger is not None
                and trigger.after_commands is not None
                and (trigger.only is None or name in trigger.only)
            )
            if counted and trigger is not None and self._matched == trigger.after_commands:
                if trigger.reply_bytes is not None:
                    # The command goes through; the fault waits inside its reply.
                    self._trigger = Trigger(trigger.fault, after_server_bytes=trigger.reply_bytes)
                    self._bytes_at_arm = self.server_bytes
                elif trigger.fault not in (Fault.GARBAGE, Fault.DRIBBLE):
                    # What was let through must reach the server before the fault:
                    # this command and the rest of the chunk never do.
                    _drain(pair.upstream)
                    self._fire(trigger.fault)
                    return
                else:
                    self._fire(trigger.fault)  # the server runs it; its reply is changed
            elif counted:
                self._matched += 1
            pair.upstream.outbox += raw
            self.commands[name] += 1
        self._update(pair)

    def _from_server(self, pair: _Pair) -> None:
        data = pair.upstream.sock.recv(_RECV_SIZE)
        if not data:
            self._hang_up(pair, pair.client)
            return
        if pair.garbled or self._mode is Fault.GARBAGE:
            self._garble(pair)
            return
        trigger = self._trigger
        if trigger is not None and trigger.after_server_bytes is not None:
            room = trigger.after_server_bytes - (self.server_bytes - self._bytes_at_arm)
            if len(data) > room:
                self._to_client(pair, data[:room])
                if trigger.fault is Fault.GARBAGE:
                    self._fire(trigger.fault)
                    self._garble(pair)  # junk in place of the rest of this reply
                elif trigger.fault is Fault.DRIBBLE:
                    self._fire(trigger.fault)
                    self._to_client(pair, data[room:])  # the rest a byte at a time
                else:
                    _drain(pair.client)  # what was let through reaches the client first
                    self._fire(trigger.fault)
                return
        self._to_client(pair, data)

    def _to_client(self, pair: _Pair, data: bytes) -> None:
        self.server_bytes += len(data)
        if self._mode is Fault.DRIBBLE:
            pair.held += data
            return
        pair.client.outbox += data
        self._update(pair)

    def _next_wait(self) -> float:
        """How long the loop may sleep: until the next byte of a dribble is due."""
        dribbling = [pair.next_drip for pair in self._pairs if pair.held]
        if not dribbling:
            return 0.5
        return min(0.5, max(0.0, min(dribbling) - time.monotonic()))

    def _drip(self) -> None:
        """Pass one held byte to each dribbling client whose next one is due."""
        now = time.monotonic()
        for pair in list(self._pairs):
            if pair.held and now >= pair.next_drip:
                pair.client.outbox += pair.held[:1]
                del pair.held[:1]
                pair.next_drip = now + self.dribble_interval
                self._update(pair)

    def _garble(self, pair: _Pair) -> None:
        if not pair.garbled:
            pair.garbled = True
            pair.client.outbox += self.junk
            self._update(pair)

    def _fire(self, fault: Fault) -> None:
        """Switch ``fault`` on for every connection (the armed trigger is spent)."""
        self._trigger = None
        self._mode = fault
        self.faults_injected += 1
        if fault is Fault.RESET:
            for pair in list(self._pairs):
                self._close(pair, abort=True)
        elif fault is Fault.STALL:
            for pair in self._pairs:
                self._update(pair)
        self.fired_at = time.monotonic()
        self.fired.set()

    def _flush(self, pair: _Pair, side: str) -> None:
        end = pair.client if side == "client" else pair.upstream
        if end.outbox:
            sent = end.sock.send(end.outbox)
            del end.outbox[:sent]
        if pair.closing and not pair.client.outbox and not pair.upstream.outbox:
            self._close(pair, abort=False)
        else:
            self._update(pair)

    def _hang_up(self, pair: _Pair, other: _End) -> None:
        """One side closed: pass on what is still owed to the other side, then close."""
        pair.closing = True
        if other.outbox and self._mode is not Fault.STALL:
            self._update(pair)
        else:
            self._close(pair, abort=False)

    def _update(self, pair: _Pair) -> None:
        """Register each socket for what it needs now: reading unless closing or
        stalled, writing while its outbox holds bytes (never while stalled)."""
        if pair not in self._pairs:
            return
        for end, side in ((pair.client, "client"), (pair.upstream, "upstream")):
            wanted = 0
            if self._mode is not Fault.STALL:
                if not pair.closing:
                    wanted |= selectors.EVENT_READ
                if end.outbox:
                    wanted |= selectors.EVENT_WRITE
            if wanted == end.events:
                continue
            if end.events == 0:
                self._selector.register(end.sock, wanted, (pair, side))
            elif wanted == 0:
                self._selector.unregister(end.sock)
            else:
                self._selector.modify(end.sock, wanted, (pair, side))
            end.events = wanted

    def _close(self, pair: _Pair, abort: bool) -> None:
        self._pairs.discard(pair)
        for end in (pair.client, pair.upstream):
            if end.events:
                self._selector.unregister(end.sock)
                end.events = 0
        if abort:
            _abort_socket(pair.client.sock)
        else:
            pair.client.sock.close()
        pair.upstream.sock.close()

    def _shutdown(self) -> None:
        for pair in list(self._pairs):
            self._close(pair, abort=True)
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
        if self._wake_reader is not None and self._wake_writer is not None:
            self._selector.unregister(self._wake_reader)
            self._wake_reader.close()
            self._wake_writer.close()
        self._selector.close()
        # Callers still waiting learn that nothing will run their switch.
        while True:
            try:
                _, reply = self._controls.get_nowait()
            except queue.Empty:
                break
            reply.error = RuntimeError("the proxy stopped")
            reply.done.set()


@dataclass
class _Reply:
    """How the loop thread tells a caller its switch was carried out."""

    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


def _abort_socket(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN: SO_LINGER on, with a zero timeout."""
    with contextlib.suppress(OSError):  # already reset by the peer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _drain(end: _End, timeout: float = 2.0) -> None:
    """Write ``end``'s outbox out now (blocking, bounded): a reset would discard it."""
    if not end.outbox:
        return
    end.sock.settimeout(timeout)
    try:
        end.sock.sendall(end.outbox)
        end.outbox.clear()
    except OSError:
        pass
    finally:
        end.sock.setblocking(False)
