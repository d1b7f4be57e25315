"""A tiny UDP probe, independent of macula_nat (plain sockets, JSON over UDP).

Run inside lab namespaces with the venv python:

- ``reflect IP1 IP2 PORT1 PORT2``: answer every request with the source address it came from
  (``observed``), sent from the socket the request names in ``reply_from`` (default: the one it
  arrived on). Prints ``ready`` once all four sockets are bound.
- ``classify LOCAL_IP IP1 IP2 PORT1 PORT2``: RFC 5780 style mapping, filtering and allocation
  measurements against a reflector; prints one JSON object.
- ``echo IP PORT`` / ``ping LOCAL_IP IP PORT COUNT WAIT_S``: round-trip times of COUNT
  sequential pings, each given up after WAIT_S.
- ``punch LOCAL_IP LOCAL_PORT PEER_IP PEER_PORT SECONDS``: naive simultaneous-send punching;
  prints the peer address it heard from, or null.

Every loop is bounded in time.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from typing import Any

Addr = tuple[str, int]
ATTEMPTS = 3
ATTEMPT_WAIT_S = 0.25
MAX_SERVE_S = 120.0


def _udp(ip: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    return sock


def reflect(ips: list[str], ports: list[int]) -> None:
    socks = {(ip, port): _udp(ip, port) for ip in ips for port in ports}
    print("ready", flush=True)
    deadline = time.monotonic() + MAX_SERVE_S
    while time.monotonic() < deadline:
        readable, _, _ = select.select(list(socks.values()), [], [], 1.0)
        for sock in readable:
            data, src = sock.recvfrom(2048)
            try:
                req = json.loads(data)
                reply_from = req.get("reply_from")
            except (ValueError, AttributeError):
                continue
            out = socks.get((reply_from[0], reply_from[1])) if reply_from else sock
            if out is None:
                continue
            answer = {"id": req.get("id"), "observed": list(src), "via": list(out.getsockname())}
            out.sendto(json.dumps(answer).encode(), src)


_nonce = iter(range(1, 1_000_000))


Request = tuple[socket.socket, Addr, dict[str, object]]


def exchange(requests: list[Request]) -> list[dict[str, Any] | None]:
    """Send every request (one per socket), retrying unanswered ones; return the answers in
    order, each with ``from``, the address it really came from (None: never answered)."""
    nonce = next(_nonce)
    answers: list[dict[str, Any] | None] = [None] * len(requests)
    by_sock = {id(sock): i for i, (sock, _, _) in enumerate(requests)}
    for attempt in range(ATTEMPTS):
        pending = [i for i, a in enumerate(answers) if a is None]
        if not pending:
            break
        for i in pending:
            sock, dest, req = requests[i]
            sock.sendto(json.dumps({**req, "id": f"{nonce}.{i}.{attempt}"}).encode(), dest)
        deadline = time.monotonic() + ATTEMPT_WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            socks = [requests[i][0] for i in pending if answers[i] is None]
            if not socks:
                break
            readable, _, _ = select.select(socks, [], [], left)
            for sock in readable:
                data, src = sock.recvfrom(2048)
                i = by_sock[id(sock)]
                answer = json.loads(data)
                if str(answer.get("id", "")).startswith(f"{nonce}.{i}."):
                    answers[i] = {**answer, "from": list(src)}
    return answers


def _observed(answer: dict[str, Any] | None) -> list[object] | None:
    return None if answer is None else answer["observed"]


def classify(local_ip: str, ips: list[str], ports: list[int]) -> dict[str, object]:
    a, b = ips
    p1, p2 = ports
    # Mapping: one socket to four server addresses (RFC 5780 tests I-III, plus A:P2).
    sock = _udp(local_ip)
    local = list(sock.getsockname())
    mapped = {}
    for name, dest in (("a1", (a, p1)), ("b1", (b, p1)), ("b2", (b, p2)), ("a2", (a, p2))):
        mapped[name] = _observed(exchange([(sock, dest, {})])[0])
    sock.close()
    # Filtering: fresh sockets, each asking for the answer from another address.
    kinds = {"control": (a, p1), "change_port": (a, p2), "change_both": (b, p2)}
    fresh = {k: _udp(local_ip) for k in kinds}
    answers = exchange([(fresh[k], (a, p1), {"reply_from": list(src)}) for k, src in kinds.items()])
    filtering = {
        k: None if ans is None else ans["from"] for k, ans in zip(kinds, answers, strict=True)
    }
    for s in fresh.values():
        s.close()
    # Allocation: fresh sockets one after another, same destination.
    local_ports, mapped_ports = [], []
    for _ in range(6):
        s = _udp(local_ip)
        obs = _observed(exchange([(s, (a, p1), {})])[0])
        local_ports.append(s.getsockname()[1])
        mapped_ports.append(None if obs is None else obs[1])
        s.close()
    return {
        "local": local,
        "mapped": mapped,
        "filtering": filtering,
        "allocation": {"local_ports": local_ports, "mapped_ports": mapped_ports},
    }


def echo(ip: str, port: int) -> None:
    sock = _udp(ip, port)
    print("ready", flush=True)
    deadline = time.monotonic() + MAX_SERVE_S
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 1.0)
        if readable:
            data, src = sock.recvfrom(2048)
            sock.sendto(data, src)


def ping(local_ip: str, ip: str, port: int, count: int, wait_s: float) -> dict[str, object]:
    sock = _udp(local_ip)
    rtts = []
    for seq in range(count):
        sent = time.monotonic()
        sock.sendto(str(seq).encode(), (ip, port))
        deadline = sent + wait_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except TimeoutError:
                break
            if data == str(seq).encode():
                rtts.append(time.monotonic() - sent)
                break
    return {"sent": count, "rtts": rtts}


def punch(local_ip: str, local_port: int, peer: Addr, seconds: float) -> Addr | None:
    sock = _udp(local_ip, local_port)
    heard: Addr | None = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.sendto(b"punch", peer)
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            data, src = sock.recvfrom(2048)
            if data == b"punch":
                heard = src
    return heard


def main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "reflect":
        reflect(args[0:2], [int(args[2]), int(args[3])])
    elif cmd == "classify":
        result = classify(args[0], args[1:3], [int(args[3]), int(args[4])])
        print(json.dumps(result))
    elif cmd == "echo":
        echo(args[0], int(args[1]))
    elif cmd == "ping":
        print(json.dumps(ping(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))))
    elif cmd == "punch":
        heard = punch(args[0], int(args[1]), (args[2], int(args[3])), float(args[4]))
        print(json.dumps(heard))
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
