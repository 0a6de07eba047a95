"""A bounded load test of a running server: M requests from K client threads, keep-alive.

It measures the whole round trip a page's request takes on this machine (JSON encoding of a
280x280 drawing, HTTP, preprocessing, the models), so its numbers depend on the machine, on what
else runs there, and on the predictor; they are for comparing changes on one machine.
"""

import dataclasses
import http.client
import json
import threading
import time

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class LoadResult:
    requests: int
    threads: int
    errors: int  # responses other than 200, and failed connections
    seconds: float
    requests_per_s: float
    latency_ms: dict[str, float]  # p50, p90, p99, max over the successful requests


def drawing_body(digit: np.ndarray, size: int = 280) -> bytes:
    """A POST /predict body like the page's: `digit` (28x28, white on black) drawn black on a
    white size x size canvas."""
    canvas = Image.fromarray(255 - np.asarray(digit, dtype=np.uint8))
    canvas = canvas.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(canvas, dtype=np.uint8).reshape(-1).tolist()
    return json.dumps({"width": size, "height": size, "pixels": pixels}).encode("utf-8")


def run_load_test(
    host: str,
    port: int,
    body: bytes,
    *,
    requests: int = 200,
    threads: int = 4,
    path: str = "/predict",
    timeout: float = 30.0,
) -> LoadResult:
    """Sends `requests` POSTs of `body` from `threads` threads, each on its own connection."""
    if requests < 1 or threads < 1:
        raise ValueError(f"requests and threads must be >= 1, got {requests} and {threads}")
    shares = [requests // threads + (i < requests % threads) for i in range(threads)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(count: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        mine, failed = [], 0
        for _ in range(count):
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    mine.append(time.perf_counter() - start)
                else:
                    failed += 1
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    workers = [threading.Thread(target=client, args=(n,)) for n in shares if n]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return LoadResult(
        requests=requests,
        threads=threads,
        errors=errors[0],
        seconds=round(seconds, 3),
        requests_per_s=round(len(latencies) / seconds, 2),
        latency_ms={
            "p50": round(float(np.percentile(ms, 50)), 2),
            "p90": round(float(np.percentile(ms, 90)), 2),
            "p99": round(float(np.percentile(ms, 99)), 2),
            "max": round(float(ms.max()), 2),
        },
    )
