#!/usr/bin/env python3
"""The documentation's reference script, as a loop: one listing page at a time, then one job
result at a time, then one attachment download at a time, no retries. The baseline for the
"N x faster than the reference script" headline."""

import argparse
import json
import os

import requests


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--annotations", action="store_true")
    args = p.parse_args()
    base = args.base_url.rstrip("/")
    headers = {"x-api-key": os.environ["PLAYMENT_API_KEY"]}
    s = requests.Session()
    details = s.get(f"{base}/v1/projects/{args.project}/details", headers=headers).json()["data"]
    for batch in details["batches"]:
        d = os.path.join(args.out, "batches", batch["id"])
        os.makedirs(d, exist_ok=True)
        jobs, token = [], ""
        while True:
            page = s.get(f"{base}/v1/projects/{args.project}/batch/{batch['id']}",
                         params={"page_token": token}, headers=headers).json()["data"]
            jobs.extend(page.get("jobs") or [])
            token = page.get("next_page_token")
            if not token or not page.get("jobs"):
                break
        with open(os.path.join(d, "jobs.ndjson"), "w") as f:
            for job in jobs:
                f.write(json.dumps(job) + "\n")
        with open(os.path.join(d, "results.ndjson"), "w") as f:
            for job in jobs:
                r = s.get(f"{base}/v1/projects/{args.project}/jobs/{job['id']}", headers=headers).json()["data"]
                f.write(json.dumps(r) + "\n")
                if args.annotations and r.get("result"):
                    s.get(f"{base}/v1/attachments", params={"url": r["result"]}, headers=headers)


if __name__ == "__main__":
    main()
