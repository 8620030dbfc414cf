"""A real agent process for fault tests: claims N tasks through the gateway with short leases,
prints each key and epoch as a JSON line, then heartbeats until it is killed."""

from __future__ import annotations

import json
import sys
import time

import httpx


def main() -> None:
    url, token, count, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    headers = {"Authorization": f"Bearer {token}"}
    held = []
    with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
        for _ in range(count):
            res = c.post("/v1/claim", json={"lease_seconds": lease}).json()
            if res["lease"] is None:
                break
            held.append((res["lease"]["key"], res["lease"]["epoch"]))
            print(
                json.dumps({"key": res["lease"]["key"], "epoch": res["lease"]["epoch"]}), flush=True
            )
        print(json.dumps({"holding": len(held)}), flush=True)
        while True:  # a live agent keeps its leases until it dies
            time.sleep(lease / 3)
            for key, epoch in held:
                c.post(f"/v1/tasks/{key}/heartbeat", json={"epoch": epoch, "lease_seconds": lease})


if __name__ == "__main__":
    main()
