#!/usr/bin/env python3
"""The exporter a capable Python user would write: asyncio + aiohttp, one semaphore for requests
in flight, retries with exponential backoff, the same output layout (jobs.ndjson, results.ndjson,
batch.json, project.json). No resume, no rate limit: the peer for CPU and memory figures."""

import argparse
import asyncio
import json
import os
import random
import sys

import aiohttp

TRANSIENT_CODES = {"FS_0000", "FS_0008", "api_error"}


async def get(session, sem, url, params=None, retries=8):
    for attempt in range(retries + 1):
        async with sem:
            try:
                async with session.get(url, params=params) as resp:
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status, body = None, b""
        if status is not None:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if status == 200 and doc and doc.get("success", True):
                return doc["data"]
            code = ((doc or {}).get("error") or {}).get("code")
            if status not in (408, 429) and status < 500 and code not in TRANSIENT_CODES:
                raise RuntimeError(f"{url}: HTTP {status} {code}")
        await asyncio.sleep(min(30, 0.5 * 2 ** attempt) * random.random())
    raise RuntimeError(f"{url}: failed after {retries} retries")


async def export_batch(session, sem, args, batch, out):
    bid = batch["id"]
    d = os.path.join(out, "batches", bid)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump(batch, f)
    seen, token = set(), ""
    url = f"{args.base_url}/v1/projects/{args.project}/batch/{bid}"
    with open(os.path.join(d, "jobs.ndjson"), "w") as jobs_f, open(os.path.join(d, "results.ndjson"), "w") as res_f:
        pending = []

        async def fetch(job_id):
            data = await get(session, sem, f"{args.base_url}/v1/projects/{args.project}/jobs/{job_id}")
            res_f.write(json.dumps(data, ensure_ascii=False) + "\n")

        while True:
            page = await get(session, sem, url, params={"page_token": token})
            jobs = page.get("jobs") or []
            for job in jobs:
                if job["id"] not in seen:
                    seen.add(job["id"])
                    jobs_f.write(json.dumps(job, ensure_ascii=False) + "\n")
                    pending.append(asyncio.create_task(fetch(job["id"])))
            token = page.get("next_page_token")
            if not token or not jobs:
                break
        await asyncio.gather(*pending)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    args.base_url = args.base_url.rstrip("/")
    key = os.environ["PLAYMENT_API_KEY"]
    sem = asyncio.Semaphore(args.concurrency)
    conn = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers={"x-api-key": key}, connector=conn, timeout=timeout) as session:
        details = await get(session, sem, f"{args.base_url}/v1/projects/{args.project}/details")
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "project.json"), "w") as f:
            json.dump(details, f)
        # Batches a few at a time, so many small batches do not serialise the crawl.
        batch_sem = asyncio.Semaphore(8)

        async def one(batch):
            async with batch_sem:
                await export_batch(session, sem, args, batch, args.out)

        await asyncio.gather(*(one(b) for b in details["batches"]))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
