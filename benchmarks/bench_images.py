"""Docker images: deploykit's build side by side with ``bentoml containerize``, same model, same machine.

    python benchmarks/bench_images.py [--cold-runs 2] [--starts 3] [--keep-images] [--purge] [--json FILE]

Measured for each: cold build time, rebuild time after only the model changed, image size, and
start-to-ready time (``docker run`` until ``GET /readyz`` answers 200). Both build from the same base
image (``$DEPLOYKIT_BASE_IMAGE``, default ``local/python:<X.Y>-bookworm``) and install the same pinned
wheels from the same host wheelhouse (``$DEPLOYKIT_WHEELHOUSE``, default ``~/.deploykit/wheelhouse``,
filled once and kept). How containerize is made to work offline is in ``bench_images_containerize.py``.

* Cold: no cache for the model's images. deploykit's dependency image for this lock is removed first
  and both builds run with the builder's cache off; the base images and the wheelhouse are kept.
  ``--cold-runs`` of each, alternating which goes first (ABBA), and the mean is reported.
* Rebuild: a second model (other hyperparameters, same requirements), built after the first.
* Build times are of the in-process build call each tool offers (``Package.build_image``'s function
  and ``bentoml.container.build``, which ``bentoml containerize`` calls), so neither pays a CLI's
  start-up; containerize's figure with its process start-up is printed beside it.
* Start-to-ready: the median of ``--starts`` starts of each image, alternating, each followed by a
  prediction on the package's sample rows that must answer 200.

Everything it makes is named ``deploykit-bench/*`` or labelled ``ai.deploykit.bench=images`` and is
removed at the end, except the cache: the ``deploykit/deps:*`` image and containerize's base image
(``--purge`` removes that one too). ``DEPLOYKIT_HOME`` and ``BENTOML_HOME`` are fresh temp dirs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCH_LABEL = {"ai.deploykit.bench": "images"}
NAME = "bench-churn"
TAGS = {"deploykit": ["deploykit-bench/deploykit-churn:1", "deploykit-bench/deploykit-churn:2"],
        "containerize": ["deploykit-bench/containerize-churn:v1", "deploykit-bench/containerize-churn:v2"]}
TARGETS = {"size": 0.65, "rebuild_s": 3.0, "cold": 1.0, "ready_s": 4.0}


def log(message: str = "") -> None:
    print(message, flush=True)


def machine() -> dict:
    import docker

    info = docker.from_env().info()
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(), "memory_gib": round(mem / 2**20, 1), "kernel": platform.release(),
        "docker": info["ServerVersion"], "storage": info["Driver"], "python": platform.python_version(),
        "commit": commit.stdout.strip() or "?", "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def make_packages() -> list:
    """Two fitted churn models with the same requirements (the second has other hyperparameters)."""
    import deploykit
    from deploykit.demo import churn_pipeline, make_churn

    X, y = make_churn()
    X_train, X_test, y_train, y_test = X[:1500], X[1500:], y[:1500], y[1500:]
    first = churn_pipeline().fit(X_train, y_train)
    second = churn_pipeline().set_params(model__n_estimators=60, model__random_state=1).fit(X_train, y_train)
    packages = [deploykit.package(model, name=NAME, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                                  verbose=False) for model in (first, second)]
    if packages[0].manifest["lock"] != packages[1].manifest["lock"]:
        raise SystemExit("the two models' pinned requirements differ; the rebuild measurement needs the same lock")
    return packages


def bridge_gateway(client) -> str:
    """The host's address on Docker's default bridge, which build steps can reach."""
    import ipaddress

    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def cpu_seconds(container_id: str) -> float | None:
    """CPU time a container has used so far, from its cgroup (None where the layout is unknown)."""
    for path, parse in (
        (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage", lambda text: int(text) / 1e9),
        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", lambda text: int(text.split()[1]) / 1e6),
        (f"/sys/fs/cgroup/docker/{container_id}/cpu.stat", lambda text: int(text.split()[1]) / 1e6),
    ):
        try:
            return parse(Path(path).read_text())
        except (OSError, ValueError, IndexError):
            continue
    return None


def slowest_steps(events: list[tuple[float, str]], end: float, count: int = 4) -> list[str]:
    """The longest steps, from (time, line) events: a build step or a phase of deploykit's dependency
    image lasts until the next such line, or the end of its build."""
    starts = ("Step ", "dependencies: ")
    marks = [(t, line) for t, line in events if line.startswith(starts + ("Successfully built", "model image:"))]
    marks.append((end, "end"))
    steps = [(after[0] - t, line) for (t, line), after in zip(marks, marks[1:]) if line.startswith(starts)]
    return [f"{seconds:5.1f} s  {' '.join(line.split())[:86]}" for seconds, line in sorted(steps, reverse=True)[:count]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Bench:
    """The two tools' builds and runs of the same two packages, and what they leave to clean up."""

    def __init__(self, client, packages: list, tmp: Path, base: str) -> None:
        self.client, self.packages, self.tmp, self.base = client, packages, tmp, base
        self.store = tmp / "containerize-bentoml"  # containerize's own BENTOML_HOME, with edited copies
        self.cz_log = tmp / "containerize.log"
        self.index = None
        self.cz_base = None

    # -- preparation (not timed) ----------------------------------------------------------------------------
    def prepare_containerize(self) -> str:
        import bench_images_containerize as cz
        from deploykit._docker import base as _base
        from deploykit._docker import wheelhouse

        facts = _base.check_base_image(self.base)
        wheels = wheelhouse.ensure_wheels(self.packages[0].manifest["lock"], python=facts["python"],
                                          machine=facts["machine"], libc=facts["libc"], verbose=True)
        self.cz_base, seconds = cz.base_image(self.client, self.base, BENCH_LABEL, log)
        self.index = cz.WheelIndex(wheels, bridge_gateway(self.client))
        for pkg in self.packages:
            cz.copy_bento(Path(pkg.manifest["bento"]["path"]), self.store, self.cz_base, self.index.url)
        return (f"containerize base: {self.cz_base} ({'built in %.1f s' % seconds if seconds else 'reused'}); "
                f"uv index of {len(wheels)} wheels at {self.index.url}")

    def remove_deps_image(self) -> str:
        """Remove this lock's dependency image so that the cold build makes it; return its tag."""
        import docker

        from deploykit._docker import base as _base
        from deploykit._docker.build import deps_image_tag

        tag = deps_image_tag(self.packages[0].manifest["lock"], _base.check_base_image(self.base))[0]
        try:
            self.client.images.remove(tag)  # not forced: if a container runs it, stop and say so
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise SystemExit(f"cannot remove {tag} for a cold build: {exc.explanation}; run the benchmark later")
        return tag

    # -- builds ---------------------------------------------------------------------------------------------
    def deploykit(self, which: int, *, cold: bool) -> dict:
        from deploykit._docker import build

        events: list[tuple[float, str]] = []
        image = build.build_image(self.packages[which], tag=TAGS["deploykit"][which], verbose=False,
                                  on_line=lambda line: events.append((time.perf_counter(), line)), no_cache=cold)
        return {"seconds": image.seconds, "deps_reused": image.deps_reused, "size": image.size,
                "steps": sum(line.startswith("Step ") for _, line in events),
                "slowest": slowest_steps(events, time.perf_counter())}

    def containerize(self, which: int, *, cold: bool) -> dict:
        import bench_images_containerize as cz

        before = len(self.cz_log.read_text()) if self.cz_log.exists() else 0
        tag = TAGS["containerize"][which]
        result = cz.containerize(self.packages[which].bento_tag, tag, BENCH_LABEL, self.store,
                                 no_cache=cold, log_file=self.cz_log)
        text = self.cz_log.read_text()[before:]
        events = []
        for line in text.splitlines():
            stamp, _, message = line.partition(" ")
            if stamp.replace(".", "", 1).isdigit():
                events.append((float(stamp), message.removeprefix("INFO: ")))
        return {**result, "size": self.client.images.get(tag).attrs["Size"], "steps": text.count("Step "),
                "cached": text.count("Using cache"), "slowest": slowest_steps(events, events[-1][0] if events else 0)}

    def ensure_present(self, side: str) -> str:
        """The first model's image; rebuilt from cache (untimed) if something removed it meanwhile."""
        import docker

        tag = TAGS[side][0]
        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            log(f"  ({tag} was removed by another process on this engine; rebuilt from cache, untimed)")
            (self.deploykit if side == "deploykit" else self.containerize)(0, cold=False)
        return tag

    # -- running --------------------------------------------------------------------------------------------
    def start_to_ready(self, side: str, timeout: float = 90.0) -> tuple[float, float | None]:
        """Seconds from ``docker run`` to the first 200 from /readyz, and the CPU seconds the container used
        by then (a figure that other load on the machine does not stretch); then a prediction must answer 200."""
        import httpx

        image, port = self.ensure_present(side), free_port()
        started = time.perf_counter()
        container = self.client.containers.run(image, detach=True, init=True, labels=BENCH_LABEL,
                                               ports={"3000/tcp": ("127.0.0.1", port)})
        try:
            with httpx.Client(timeout=1.0) as http:
                while True:
                    try:
                        if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.perf_counter() - started > timeout:
                        raise RuntimeError(f"{image} not ready in {timeout:.0f} s:\n{container.logs(tail=30).decode()}")
                    time.sleep(0.02)
                ready, cpu = time.perf_counter() - started, cpu_seconds(container.id)
                rows = self.packages[0].sample_rows()
                answer = http.post(f"http://127.0.0.1:{port}/predict", json={"instances": rows}, timeout=30)
                if answer.status_code != 200:
                    raise RuntimeError(f"{image} answered /predict with {answer.status_code}: {answer.text[:300]}")
            return ready, cpu
        finally:
            container.remove(force=True)

    def layers(self, image: str, minimum: int = 1_000_000) -> list[str]:
        lines = []
        for entry in self.client.api.history(image):
            if entry["Size"] >= minimum:
                created = entry["CreatedBy"].replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
                lines.append(f"{entry['Size'] / 1e6:8.1f} MB  {' '.join(created.split())[:88] or '(base image)'}")
        return lines

    def venv(self, image: str) -> list[str]:
        script = ("du -sm /opt/venv; find /opt/venv -name '*.pyc' -print0 | du -cm --files0-from=- | tail -1 "
                  "| sed 's/total/of it .pyc/'; cd /opt/venv/lib/python3.11/site-packages && du -sm * | sort -rn | head -8")
        out = self.client.containers.run(image, ["sh", "-c", script], entrypoint=[], remove=True, user="0",
                                         network_mode="none", labels=BENCH_LABEL)
        return [" ".join(line.split()) for line in out.decode().splitlines()]

    def close(self, *, keep_images: bool, purge: bool) -> None:
        """Remove what the benchmark made; keep deploykit/deps:* and (unless purged) containerize's base."""
        import docker

        for container in self.client.containers.list(all=True, filters={"label": "ai.deploykit.bench=images"}):
            container.remove(force=True)
        doomed = ([] if keep_images else TAGS["deploykit"] + TAGS["containerize"]) + ([self.cz_base] if purge else [])
        for tag in filter(None, doomed):
            try:
                self.client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass
        if self.index is not None:
            self.index.close()


def report(results: dict) -> None:
    d, c = results["deploykit"], results["containerize"]
    rows = [
        ("cold build, mean (s)", d["cold"]["seconds"], c["cold"]["seconds"], "no slower than containerize",
         d["cold"]["seconds"] <= c["cold"]["seconds"] * TARGETS["cold"]),
        ("rebuild after a model change (s)", d["rebuild"]["seconds"], c["rebuild"]["seconds"], "< 3 s",
         d["rebuild"]["seconds"] < TARGETS["rebuild_s"]),
        ("image size (MB)", d["cold"]["size"] / 1e6, c["cold"]["size"] / 1e6, "<= 65% of containerize",
         d["cold"]["size"] <= c["cold"]["size"] * TARGETS["size"]),
        ("start-to-ready, median (s)", d["ready"], c["ready"], "< 4 s", d["ready"] < TARGETS["ready_s"]),
    ]
    log("\n| measure | deploykit | bentoml containerize | deploykit / containerize | target | met |")
    log("|---|---:|---:|---:|---|---|")
    for label, ours, theirs, target, met in rows:
        log(f"| {label} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | {target} | {'yes' if met else 'NO'} |")
    results["targets_met"] = {row[0]: row[4] for row in rows}


def cold_builds(bench: Bench, runs: int) -> dict[str, list[dict]]:
    """Cold builds in ABBA order (order effects cancel); each starts with no image of the model."""
    sides = {"deploykit": [], "containerize": []}
    for i in range(runs):
        for side in (("deploykit", "containerize") if i % 2 == 0 else ("containerize", "deploykit")):
            for tag in TAGS[side]:
                if _exists(bench.client, tag):
                    bench.client.images.remove(tag, force=True)
            if side == "deploykit":
                removed = bench.remove_deps_image()
                result = bench.deploykit(0, cold=True)
                detail = f"{result['steps']} build steps; {removed} removed first and made again"
            else:
                result = bench.containerize(0, cold=True)
                detail = (f"{result['steps']} build steps; {result['wall']:.1f} s with its process start-up; "
                          f"{bench.index.requests} requests to the wheel index so far")
            sides[side].append(result)
            log(f"  {side:13} {result['seconds']:6.1f} s  ({detail})")
            log("\n".join("      " + line for line in result["slowest"]))
    return sides


def run(bench: Bench, starts: int, cold_runs: int) -> dict:
    results: dict = {"deploykit": {}, "containerize": {}}
    d, c = results["deploykit"], results["containerize"]
    log(bench.prepare_containerize())
    log(f"\ncold builds, {cold_runs} of each in ABBA order (builder cache off for both; deploykit's dependency "
        "image removed before each of its builds)")
    for side, builds in cold_builds(bench, cold_runs).items():
        results[side]["cold"] = {"seconds": statistics.mean(b["seconds"] for b in builds), "size": builds[-1]["size"],
                                 "all": [b["seconds"] for b in builds]}
    log("  mean: " + ", ".join(f"{side} {results[side]['cold']['seconds']:.1f} s" for side in results))
    log("rebuilds after a model change (the second model, same lock)")
    d["rebuild"] = bench.deploykit(1, cold=False)
    log(f"  deploykit     {d['rebuild']['seconds']:6.2f} s  ({d['rebuild']['steps']} steps; dependency image reused: "
        f"{d['rebuild']['deps_reused']})")
    c["rebuild"] = bench.containerize(1, cold=False)
    log(f"  containerize  {c['rebuild']['seconds']:6.2f} s  ({c['rebuild']['cached']} of {c['rebuild']['steps']} steps "
        f"cached; {c['rebuild']['wall']:.1f} s with its process start-up)")
    for side in ("deploykit", "containerize"):
        log(f"\n{side} image, first model: {results[side]['cold']['size'] / 1e6:.0f} MB; layers over 1 MB, newest first:")
        log("\n".join("  " + line for line in bench.layers(bench.ensure_present(side))))
    log("deploykit's /opt/venv, MB:\n" + "\n".join("  " + line for line in bench.venv(bench.ensure_present("deploykit"))))
    times: dict[str, list[tuple]] = {"deploykit": [], "containerize": []}
    for i in range(starts):
        for side in (("deploykit", "containerize") if i % 2 == 0 else ("containerize", "deploykit")):
            times[side].append(bench.start_to_ready(side))
    log("\nstart-to-ready (docker run until GET /readyz is 200; then /predict on the sample rows answered 200)")
    for side, values in times.items():
        walls, cpus = [wall for wall, _ in values], [cpu for _, cpu in values if cpu is not None]
        results[side].update(ready_all=walls, ready=statistics.median(walls), ready_cpu_all=cpus,
                             ready_cpu=statistics.median(cpus) if cpus else None)
        cpu = f"; CPU used by then, median {results[side]['ready_cpu']:.2f} s" if cpus else ""
        log(f"  {side:13} median {results[side]['ready']:.2f} s  of {', '.join(f'{t:.2f}' for t in walls)}{cpu}")
    report(results)
    return results


def _exists(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="starts of each image for start-to-ready (median)")
    parser.add_argument("--cold-runs", type=int, default=2, help="cold builds of each, in ABBA order (mean)")
    parser.add_argument("--keep-images", action="store_true", help="keep the four model images for inspection")
    parser.add_argument("--purge", action="store_true", help="also remove containerize's prepared base image")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = os.environ.setdefault("DEPLOYKIT_BASE_IMAGE", f"local/python:{minor}-bookworm")
    wheels = os.environ.setdefault("DEPLOYKIT_WHEELHOUSE", str(Path.home() / ".deploykit" / "wheelhouse"))
    os.environ.update({"DEPLOYKIT_HOME": str(tmp / "deploykit"), "BENTOML_HOME": str(tmp / "bentoml"),
                       "BENTOML_DO_NOT_TRACK": "true"})
    import docker

    client = docker.from_env(timeout=600)
    facts = machine()
    log(f"machine: {json.dumps(facts)}")
    log(f"base image: {base}; wheelhouse: {wheels} (both kept; no download is timed)")
    bench = None
    try:
        started = time.perf_counter()
        packages = make_packages()
        log(f"packaged two models ({packages[0].manifest['estimator']}, the same {len(packages[0].manifest['lock'])}"
            f"-package lock) in {time.perf_counter() - started:.1f} s")
        bench = Bench(client, packages, tmp, base)
        results = run(bench, args.starts, args.cold_runs)
    finally:
        if bench is not None:
            bench.close(keep_images=args.keep_images, purge=args.purge)
        shutil.rmtree(tmp, ignore_errors=True)
    results.update(machine=facts, base_image=base, wheelhouse=wheels, seconds=time.perf_counter() - began,
                   load_average_after=[round(x, 2) for x in os.getloadavg()])
    log(f"\nload average before / after: {facts['load_average']} / {results['load_average_after']}")
    log(f"benchmark took {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
