"""A local Segment double for throughput benchmarks: `python -m bench.segment_double PORT`.

It answers POST .../v1/batch the way Segment's HTTP Tracking API does (200 `{"success": true}` for a valid batch,
400 for a body that is not a JSON object with a `batch` list, 401 without a write key in Basic auth or the body),
decodes every body (gzip too) and counts the messages and distinct messageIds it received. It stores nothing else,
so that the figure measured is the sender's, not a database's. HTTP/1.1 keep-alive, one asyncio loop.

GET /stats → {"requests", "messages", "distinct_message_ids", "rejected"}; POST /reset clears them.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import sys

import orjson


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.messages = 0
        self.rejected = 0
        self.ids: set[str] = set()

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "requests": self.requests,
                "messages": self.messages,
                "distinct_message_ids": len(self.ids),
                "rejected": self.rejected,
            }
        )


STATS = Stats()


def _has_key(headers: dict[str, str], body: dict) -> bool:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            return bool(base64.b64decode(auth[6:]).decode().partition(":")[0])
        except ValueError:
            return False
    return bool(body.get("writeKey"))


def _batch(headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
    if headers.get("content-encoding", "").lower() == "gzip":
        raw = gzip.decompress(raw)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 400, b'{"code":"invalid_request","message":"Invalid JSON"}'
    if body.__class__ is not dict or body.get("batch").__class__ is not list:
        return 400, b'{"code":"invalid_request","message":"batch must be a list"}'
    if not _has_key(headers, body):
        return 401, b'{"code":"unauthorized","message":"Missing write key"}'
    STATS.requests += 1
    for message in body["batch"]:
        if message.__class__ is not dict or not (message.get("userId") or message.get("anonymousId")):
            STATS.rejected += 1
            continue
        STATS.messages += 1
        STATS.ids.add(message.get("messageId"))
    return 200, b'{"success":true}'


def _route(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    if method == "POST" and path.endswith("/batch"):
        return _batch(headers, body)
    if method == "GET" and path.endswith("/stats"):
        return 200, STATS.as_json()
    if method == "POST" and path.endswith("/reset"):
        STATS.reset()
        return 200, b"{}"
    return 404, b'{"code":"not_found"}'


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, answer = _route(method, path, headers, body)
            writer.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port, limit=2**20)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
