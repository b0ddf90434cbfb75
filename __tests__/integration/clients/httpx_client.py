"""Reads one stream with Python's httpx (and httpx-sse), for __tests__/integration/clients/corpus.test.ts.

    python httpx_client.py sse URL     -> httpx-sse's iter_sse(): [{"data", "event", "lastEventId"}, ...] until "[DONE]"
    python httpx_client.py ndjson URL  -> httpx's iter_lines(): [{"value": parsed}] per non-empty line, or
                                          [{"broken": line}] for a line that is not JSON

Prints one JSON array on stdout, ASCII only (json.dumps escapes the rest), so nothing depends on the pipe's encoding.
"""
import json
import sys

import httpx
from httpx_sse import connect_sse


def read_sse(client: httpx.Client, url: str) -> list:
    out = []
    with connect_sse(client, "GET", url) as source:
        for sse in source.iter_sse():
            # sse.id is httpx-sse's last event id: it carries over from event to event, as the spec's does.
            out.append({"data": sse.data, "event": sse.event, "lastEventId": sse.id})
            if sse.data == "[DONE]":
                break
    return out


def read_ndjson(client: httpx.Client, url: str) -> list:
    out = []
    with client.stream("GET", url, headers={"Accept": "application/x-ndjson"}) as response:
        for line in response.iter_lines():
            if line == "":
                continue  # the NDJSON heartbeat
            try:
                out.append({"value": json.loads(line)})
            except ValueError:
                out.append({"broken": line})
    return out


def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    with httpx.Client(timeout=30) as client:
        out = read_sse(client, url) if mode == "sse" else read_ndjson(client, url)
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
