#!/usr/bin/env python3
"""Talks to the built-in guest's network responder the way a monitoring client would.

  echo-client.py ping ADDRESS COUNT                ICMP echo (raw socket, root), prints replies
  echo-client.py udp ADDRESS RATE SECONDS [STOP]   UDP echo (port 7) with sequence numbers

udp sends RATE datagrams per second for SECONDS (or until the file STOP exists) and prints one
JSON line: sent, received, lost, duplicated, reordered, the worst and median round trip (ms),
and the longest gap between two replies (ms, with when it started), so a caller can match it
with what happened meanwhile (a live update).
"""
import json, os, select, socket, struct, sys, time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(address, count):
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(1)
    ident = os.getpid() & 0xFFFF
    replies = 0
    for seq in range(count):
        payload = b"cprvmm-ping-%d" % seq
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(2048)
            except socket.timeout:
                break
            icmp = data[(data[0] & 0x0F) * 4:]
            kind, _, sum_, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if kind == 0 and rid == ident and rseq == seq and checksum(icmp) == 0 and icmp[8:] == payload:
                replies += 1
                print("reply seq %d" % seq)
                break
    print(json.dumps({"sent": count, "received": replies}))


def udp(address, rate, seconds, stop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect((address, 7))
    interval = 1.0 / rate
    start = time.monotonic()
    next_send = start
    sent_at = {}
    seen = set()
    duplicated = reordered = 0
    highest = -1
    rtts = []
    last_reply = None
    worst_gap = (0.0, 0.0)
    seq = 0
    end = start + seconds
    while True:
        now = time.monotonic()
        if stop and now < end and os.path.exists(stop):
            end = now  # stopped: wait for the last replies as after a timed run
        sending = now < end
        if sending and now >= next_send:
            payload = struct.pack("!Q", seq) + b"x" * 24
            try:
                sock.send(payload)
                sent_at[seq] = now
                seq += 1
            except BlockingIOError:
                pass
            next_send += interval
            if next_send < now - 1:
                next_send = now
        if not sending and (now > max(end, next_send) + 2 or len(seen) == seq):
            break
        timeout = max(0.0, min(next_send - time.monotonic(), 0.05)) if sending else 0.05
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            now = time.monotonic()
            number = struct.unpack("!Q", data[:8])[0]
            if number in seen:
                duplicated += 1
                continue
            if number < highest:
                reordered += 1
            highest = max(highest, number)
            seen.add(number)
            if number in sent_at:
                rtts.append((now - sent_at[number]) * 1000)
            if last_reply is not None and now - last_reply > worst_gap[0] / 1000:
                worst_gap = ((now - last_reply) * 1000, (last_reply - start) * 1000)
            last_reply = now
    rtts.sort()
    print(json.dumps({
        "sent": seq, "received": len(seen), "lost": seq - len(seen), "duplicated": duplicated,
        "reordered": reordered, "worst-rtt-ms": round(rtts[-1], 3) if rtts else None,
        "median-rtt-ms": round(rtts[len(rtts) // 2], 3) if rtts else None,
        "longest-gap-ms": round(worst_gap[0], 3), "longest-gap-at-ms": round(worst_gap[1], 1),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "ping":
        ping(sys.argv[2], int(sys.argv[3]))
    else:
        udp(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
