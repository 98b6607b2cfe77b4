"""Container health checks that need only Python: exit 0 when the URL answers 200.

python docker/healthcheck.py backend   ->  http://localhost:8000/api/v1/health
python docker/healthcheck.py flower    ->  http://localhost:5555[/FLOWER_URL_PREFIX]/healthcheck
"""

import os
import sys
import urllib.request


def url_for(service: str) -> str:
    if service == "backend":
        return "http://localhost:8000/api/v1/health"
    if service == "flower":
        prefix = os.environ.get("FLOWER_URL_PREFIX", "").strip("/")
        return f"http://localhost:5555/{prefix + '/' if prefix else ''}healthcheck"
    raise SystemExit(f"unknown service {service!r}")


def main() -> int:
    url = url_for(sys.argv[1])
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError and HTTPError (a 503 from /api/v1/health) included
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
