"""Load for the serving benchmark: closed-loop JSON POSTs from a separate process on loopback.

wrk (``apt-get install -y wrk``) with a generated Lua script is used when installed: its ``done()``
hook prints the request count, every error class and the latency percentiles as one line. Without
wrk, this module runs itself as a separate process with an asyncio + aiohttp client that keeps
``concurrency`` requests in flight and reports the same fields (it saturates earlier than wrk, so
the empty-endpoint floors read lower with it)::

    python benchmarks/bench_serving_load.py URL BODY_FILE CONCURRENCY SECONDS
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 30  # a request slower than this counts as a timeout error
ERROR_KINDS = ("connect", "read", "write", "status", "timeout", "failed")  # failed: a run that gave no result
_MARK = "BENCH_RESULT "

_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%(mark)s{"requests": %%d, "seconds": %%.6f, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_ms": %%.4f, "p90_ms": %%.4f, "p99_ms": %%.4f, ' ..
    '"max_ms": %%.4f}\\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
"""


def generator() -> str:
    """'wrk <version>' or 'python aiohttp client (wrk not installed)'."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return "python asyncio+aiohttp client (wrk not installed)"
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return (proc.stdout + proc.stderr).split("Copyright")[0].strip() or "wrk"


def run(url: str, body: bytes, concurrency: int, seconds: int) -> dict:
    """One load run; returns requests, rps, p50/p90/p99/max ms and error counts (``errors`` is their sum)."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        if shutil.which("wrk"):
            result = _wrk(url, body, concurrency, seconds, Path(tmp))
        else:
            body_file = Path(tmp) / "body.json"
            body_file.write_bytes(body)
            result = _subprocess([sys.executable, __file__, url, str(body_file), str(concurrency), str(seconds)], seconds)
    result["errors"] = sum(result.get(k, 0) for k in ERROR_KINDS)
    result["rps"] = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    return result


def _wrk(url: str, body: bytes, concurrency: int, seconds: int, tmp: Path) -> dict:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the request body cannot be embedded in a Lua long string")
    script = tmp / "post.lua"
    script.write_text(_LUA % {"body": text, "mark": _MARK})
    threads = min(2, concurrency)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={TIMEOUT_S}s",
               "--latency", "-s", str(script), url]
    return _subprocess(command, seconds)


_MIX_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {%(bodies)s}
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  status_5xx, status_4xx = 0, 0
end

function delay()
  return %(delay)d
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter %% #bodies) + 1])
end

function response(status, headers, body)
  if status >= 500 then status_5xx = status_5xx + 1 elseif status >= 400 then status_4xx = status_4xx + 1 end
end

function done(summary, latency, requests)
  local e, s5, s4 = summary.errors, 0, 0
  for _, thread in ipairs(threads) do
    s5 = s5 + thread:get("status_5xx")
    s4 = s4 + thread:get("status_4xx")
  end
  io.write(string.format('%(mark)s{"requests": %%d, "seconds": %%.6f, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "status_5xx": %%d, "status_4xx": %%d, "p50_ms": %%.4f, ' ..
    '"p90_ms": %%.4f, "p99_ms": %%.4f, "max_ms": %%.4f}\\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.timeout, s5, s4,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


def run_mix(url: str, bodies: list[bytes], concurrency: int, seconds: int, delay_ms: int = 0) -> dict:
    """A wrk run cycling through ``bodies`` (repeat one to weight it), each connection pausing ``delay_ms``
    between requests; counts 5xx and 4xx answers apart (``status_5xx``, ``status_4xx``). Needs wrk."""
    if not shutil.which("wrk"):
        raise RuntimeError("the mixed-load run needs wrk: apt-get install -y wrk")
    texts = [body.decode() for body in bodies]
    if any("]==]" in text for text in texts):
        raise ValueError("a request body cannot be embedded in a Lua long string")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        script = Path(tmp) / "mix.lua"
        script.write_text(_MIX_LUA % {"bodies": ", ".join(f"[==[{t}]==]" for t in texts), "delay": delay_ms,
                                      "mark": _MARK})
        command = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={TIMEOUT_S}s",
                   "--latency", "-s", str(script), url]
        result = _subprocess(command, seconds)
    result["errors"] = sum(result.get(k, 0) for k in ("connect", "read", "write", "timeout", "failed"))
    result["rps"] = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    return result


def _subprocess(command: list[str], seconds: int) -> dict:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + TIMEOUT_S + 30)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    # e.g. wrk's "unable to connect": the server is gone. Counted as an error, never as a fast empty run.
    print(f"load generator gave no result (exit {proc.returncode}): {proc.stdout[-300:]} {proc.stderr[-300:]}",
          file=sys.stderr)
    return {"requests": 0, "seconds": float(seconds), "failed": 1, "p50_ms": None, "p90_ms": None, "p99_ms": None,
            "max_ms": None}


# -- the fallback client, run as its own process ---------------------------------------------------
async def _client(url: str, body: bytes, concurrency: int, seconds: float) -> dict:
    import asyncio
    import time

    import aiohttp

    counts = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    latencies: list[float] = []
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        if response.status > 399:
                            counts["status"] += 1
                except asyncio.TimeoutError:
                    counts["timeout"] += 1
                    continue
                except aiohttp.ClientConnectorError:
                    counts["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
                except aiohttp.ClientError:
                    counts["read"] += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1e3 if latencies else 0.0

    return {"requests": len(latencies), "seconds": elapsed, **counts,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": pct(100)}


if __name__ == "__main__":
    import asyncio

    try:
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run
    url_, body_file_, concurrency_, seconds_ = sys.argv[1:5]
    outcome = run_loop(_client(url_, Path(body_file_).read_bytes(), int(concurrency_), float(seconds_)))
    print(_MARK + json.dumps(outcome), flush=True)
