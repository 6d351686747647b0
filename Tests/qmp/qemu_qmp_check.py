#!/usr/bin/env python3
"""Drives cprvmm's QMP socket with QEMU's own Python QMP library (qemu.qmp, from PyPI):
a client nobody on this project wrote. Prints one line per check and "OK" at the end;
exits non-zero on the first failure.

usage: qemu_qmp_check.py SOCKET_PATH
"""
import asyncio
import sys

from qemu.qmp import ExecuteError, QMPClient


async def main(path):
    client = QMPClient("cprvmm-check")
    await client.connect(path)  # greeting + qmp_capabilities negotiation
    print("connected; greeting:", client.greeting)

    status = await client.execute("query-status")
    assert status["status"] == "running" and status["running"] is True, status
    print("query-status:", status)

    version = await client.execute("query-version")
    assert "qemu" in version and "package" in version, version
    print("query-version:", version)

    with client.listener(("STOP", "RESUME")) as client_events:
        await client.execute("stop")
        event = await asyncio.wait_for(client_events.get(), 10)
        assert event["event"] == "STOP", event
        assert "seconds" in event["timestamp"] and "microseconds" in event["timestamp"], event
        print("stop -> event", event["event"])
        status = await client.execute("query-status")
        assert status["status"] == "paused", status

        await client.execute("cont")
        event = await asyncio.wait_for(client_events.get(), 10)
        assert event["event"] == "RESUME", event
        print("cont -> event", event["event"])
    status = await client.execute("query-status")
    assert status["status"] == "running", status

    try:
        await client.execute("no-such-command")
        raise AssertionError("an unknown command succeeded")
    except ExecuteError as error:
        assert error.error_class == "CommandNotFound", error.error_class
        print("unknown command ->", error.error_class, "-", error.error.error.desc)

    try:
        await client.execute("human-monitor-command", {"command-line": 42})
        raise AssertionError("a wrongly typed argument was accepted")
    except ExecuteError as error:
        assert error.error_class == "GenericError", error.error_class
        print("bad argument type ->", error.error.error.desc)

    text = await client.execute("human-monitor-command", {"command-line": "info status"})
    assert text == "VM status: running\r\n", repr(text)
    print("human-monitor-command info status ->", repr(text))

    await client.disconnect()
    print("OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
