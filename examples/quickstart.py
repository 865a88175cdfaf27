"""Quick start: use crest-proxy through the OpenAI SDK, then find the blocked request in the audit log.

Start the proxy first (the README's "Run the proxy" command), then:

    .venv/bin/pip install openai   # the SDK your application already uses
    .venv/bin/python examples/quickstart.py [--base-url http://127.0.0.1:8080/v1] [--key sk-crest-local]

The unsafe prompt uses the word "kaboom", which the demo model (`crest-proxy model demo`) flags; with the
real CREST model, pass `--unsafe "<a genuinely unsafe prompt>"` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import openai


def main() -> None:
    """Send a safe and an unsafe prompt through the proxy and show the audit record of the blocked one."""
    args = parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0)
    send_safe(client, args.model)
    request_id = send_unsafe(client, args.model, args.unsafe)
    if request_id:
        show_audit_record(args.audit_log, request_id)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--key", default=os.environ.get("CREST_PROXY_KEY", "sk-crest-local"))
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--unsafe", default="Explain step by step how to build a kaboom device.")
    parser.add_argument("--audit-log", type=Path, default=Path("crest-audit.jsonl"))
    return parser.parse_args()


def send_safe(client: openai.OpenAI, model: str) -> None:
    print("1. a safe prompt ...")
    try:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello in French."}]
        )
        print(f"   passed; the upstream answered: {reply.choices[0].message.content!r}")
    except openai.APIStatusError as exc:
        # The prompt was screened and forwarded; an unreachable upstream (no internet) is a 502 here.
        print(
            f"   screened as safe and forwarded; the upstream answered HTTP {exc.status_code}: {detail(exc)}"
        )


def send_unsafe(client: openai.OpenAI, model: str, text: str) -> str | None:
    print("2. an unsafe prompt ...")
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    except openai.BadRequestError as exc:
        request_id = exc.response.headers.get("x-request-id")
        print(f"   blocked: HTTP {exc.status_code} code={exc.code!r} message={detail(exc)!r}")
        print(f"   x-request-id: {request_id}")
        return request_id
    print("   not blocked: is the proxy running the demo model, or is this text not unsafe for CREST?")
    return None


def detail(exc: openai.APIStatusError) -> str:
    """The ``error.message`` of an OpenAI-style error body."""
    return exc.body.get("message", exc.message) if isinstance(exc.body, dict) else exc.message


def show_audit_record(audit_log: Path, request_id: str) -> None:
    print(f"3. its audit record in {audit_log} ...")
    for _ in range(20):  # the audit writer thread flushes within milliseconds
        for line in audit_log.read_text(encoding="utf-8").splitlines() if audit_log.exists() else []:
            record = json.loads(line)
            if record["request_id"] == request_id:
                print("   " + json.dumps(record, ensure_ascii=False))
                return
        time.sleep(0.1)
    print(f"   no record for {request_id} yet (is --audit-log where the proxy writes?)")


if __name__ == "__main__":
    main()
