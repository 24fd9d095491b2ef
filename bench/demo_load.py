"""The demo server under load: queries alone and 50 at a time through gradio_client, its memory, oversized
uploads and its file routes, as one JSON object.

    python bench/demo_load.py                                   # 500 queries (about 4 minutes on 2 cores)
    python bench/demo_load.py --queries 100 --output demo_load.json
    python bench/demo_load.py --model ~/.cache/scot/quickstart/model

The server is `scot demo` in a subprocess on 127.0.0.1 with its own $SCOT_HOME (a temporary folder unless
--home), searching the built-in world's benchmark gallery. Without --model it serves the CLIP shipped for that
world with a fresh Combiner (seed 0): offline, and as costly per query as a trained one.

Report: `single` and `concurrent` ({queries, errors, p50_s, p95_s, max_s}), `errors` (all queries),
`cpu_ms_per_query` (CPU the server and the client threads spent per concurrent query, and the cores they
share), `rss_after_50_mb` / `rss_after_500_mb` (server memory after the first and the last concurrent round),
`server_log_errors` (tracebacks and HTTP protocol errors in the server's log during the queries),
`large_uploads` (images over the pixel limit: refused with a message, seconds, growth of the server's peak
memory) and `file_route_probes` ({tried, refused, leaked}: requests for files the app must not serve).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

QUERIES, CONCURRENCY, SINGLE = 500, 50, 10
K, METHOD = 10, "scot"
WORLD_SEED, WORLD_QUERIES = 0, 1000
START_TIMEOUT = 900
LARGE_SIDES = {"100 MP": 10_000, "225 MP": 15_000}
"""1-bit PNGs of these sides: a few kB on disk, 100 and 225 million pixels decoded (Pillow warns above 89 M
pixels and refuses above twice that)."""
LOG_ERRORS = ("Traceback", "LocalProtocolError", "RemoteProtocolError")
REFUSED = (400, 403, 404)
GET_ROUTES = (
    "/gradio_api/file={}",
    "/file={}",
    "/gradio_api/file/{}",
    "/file/{}",
    "/static/{}",
    "/assets/{}",
    "/svelte/{}",
    "/gradio_api/custom_component/x/client/{}",
)


# ----- the server -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_model(home: Path) -> Path:
    """The shipped world CLIP with a fresh Combiner (seed 0), saved under `home` once."""
    folder = home / "bench-model"
    if not (folder / "config.json").is_file():
        import torch

        from modeling_scot import ScotModel
        from modeling_scot.world import clip_path

        torch.manual_seed(0)
        ScotModel.from_encoder(clip_path()).save_pretrained(folder)
    return folder


def start_server(model: Path, home: Path, port: int) -> subprocess.Popen:
    """`scot demo` on 127.0.0.1:`port`, logging to `home`/server.log; returns once the page answers."""
    env = dict(os.environ, SCOT_HOME=str(home), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    command = [sys.executable, "-c", "import sys; from modeling_scot.cli import main; sys.exit(main())"]
    args = ["demo", "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = open(home / "server.log", "w")
    server = subprocess.Popen([*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the demo server exited with {server.returncode}: see {home / 'server.log'}")
        try:
            if request(f"http://127.0.0.1:{port}", "/")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(1)
    server.kill()
    raise RuntimeError(f"the demo server did not answer within {START_TIMEOUT} s: see {home / 'server.log'}")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of process `pid` from /proc (VmRSS: resident now, VmHWM: peak resident), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise ValueError(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) that process `pid` has used so far; None: this process, all its threads."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, in clock ticks


def log_errors(log: Path) -> dict:
    """How often each of LOG_ERRORS appears in the server's log so far."""
    text = log.read_text(errors="replace")
    return {marker: text.count(marker) for marker in LOG_ERRORS}


# ----- queries ----------------------------------------------------------------------------------------------


def query_files(folder: Path, count: int) -> list[tuple[str, str]]:
    """(reference image file, modification text) of `count` world benchmark queries, cycling through them."""
    from modeling_scot.world import build_benchmark, render_scene

    folder.mkdir(parents=True, exist_ok=True)
    queries = build_benchmark(WORLD_SEED, WORLD_QUERIES).queries
    jobs = []
    for number in range(count):
        query = queries[number % len(queries)]
        path = folder / f"{number % len(queries)}.png"
        if not path.is_file():
            render_scene(query.reference).save(path)
        jobs.append((str(path), query.modification))
    return jobs


class Clients:
    """One gradio_client Client per thread (each its own session, as separate users would be).

    The clients skip certificate checks (`ssl_verify=False`; the server is plain http on 127.0.0.1): otherwise
    every file they download builds a verifying TLS context, about 30 ms of CPU each, and 50 clients spend more
    CPU than the server they measure."""

    def __init__(self, url: str):
        self.url, self._local = url, threading.local()

    def get(self):
        if not hasattr(self._local, "client"):
            from gradio_client import Client

            self._local.client = Client(self.url, verbose=False, ssl_verify=False)
        return self._local.client


def one_query(clients: Clients, job: tuple[str, str]) -> tuple[float, str | None]:
    """(seconds, error or None) of one search whose result images are all downloaded."""
    from gradio_client import handle_file

    started = time.monotonic()
    try:
        gallery, _, report = clients.get().predict(handle_file(job[0]), job[1], K, METHOD, True, api_name="/search")
        if len(gallery) != K or len(report["results"]) != K:
            return time.monotonic() - started, f"{len(gallery)} results instead of {K}"
        missing = [item["image"] for item in gallery if not Path(item["image"]).is_file()]
        error = f"{len(missing)} result images not downloaded" if missing else None
    except Exception as err:  # every failure of a query is counted, whatever its kind
        error = f"{type(err).__name__}: {err}"
    return time.monotonic() - started, error


def latency_summary(results: list[tuple[float, str | None]]) -> dict:
    seconds = sorted(time_s for time_s, _ in results)
    errors = [error for _, error in results if error]
    p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
    return {
        "queries": len(results),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:5],
        "p50_s": round(statistics.median(seconds), 3),
        "p95_s": round(p95, 3),
        "max_s": round(seconds[-1], 3),
    }


# ----- oversized uploads ------------------------------------------------------------------------------------


def large_image(folder: Path, side: int) -> Path:
    """A 1-bit PNG of side x side pixels (a few kB; side * side pixels once decoded)."""
    from PIL import Image

    path = folder / f"blank-{side}.png"
    if not path.is_file():
        Image.new("1", (side, side)).save(path)
    return path


def large_uploads(url: str, pid: int, folder: Path) -> dict:
    """Each image of LARGE_SIDES searched once: refused with a message naming the pixel limit, how fast, and
    how much the server's peak memory grew meanwhile."""
    from gradio_client import Client, handle_file

    client, refused, seconds = Client(url, verbose=False, ssl_verify=False), {}, []
    peak_before = memory_mb(pid, "VmHWM")
    for name, side in LARGE_SIDES.items():
        started = time.monotonic()
        try:
            client.predict(handle_file(str(large_image(folder, side))), "make it red", K, METHOD, True, api_name="/search")
            refused[name] = "accepted"
        except Exception as err:  # the refusal is an AppError carrying the message shown to the user
            refused[name] = str(err)
        seconds.append(time.monotonic() - started)
    return {
        "tried": len(LARGE_SIDES),
        "refused": sum("pixel" in message.lower() for message in refused.values()),
        "messages": refused,
        "max_s": round(max(seconds), 3),
        "peak_rss_growth_mb": round(memory_mb(pid, "VmHWM") - peak_before, 1),
    }


# ----- file routes ------------------------------------------------------------------------------------------


def request(base_url: str, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, body) of one request for `path` sent exactly as given (no normalisation of `..` or escapes)."""
    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def path_variants(secret: str, anchors: list[str]) -> list[str]:
    """Ways of naming the absolute path `secret` in a URL: as is, climbing out of each folder of `anchors` (and
    out of the server's working folder) with `..`, percent-encoded, double-encoded and with a protocol."""
    climbs = [f"{anchor.rstrip('/')}/{'../' * 12}{secret.lstrip('/')}" for anchor in anchors]
    climbs.append("../" * 12 + secret.lstrip("/"))
    variants = [secret, "/" + secret, "file://" + secret, quote(secret, safe=""), quote(quote(secret, safe=""), safe="")]
    for climb in climbs:
        variants += [
            climb,
            climb.replace("../", "%2e%2e%2f"),
            climb.replace("../", "%2e%2e/"),
            climb.replace("../", "..%2f"),
            climb.replace("../", "..%5c"),
            climb.replace("../", "%252e%252e%252f"),
            quote(climb, safe=""),
        ]
    return list(dict.fromkeys(variants))


def upload(base_url: str, name: str, content: bytes) -> list[str]:
    """The server paths /gradio_api/upload gives for one file uploaded under the file name `name`."""
    boundary = "scot-bench-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    status, answer = request(
        base_url, "/gradio_api/upload", "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return json.loads(answer) if status == 200 else []


def query_with_file(base_url: str, file_data: object) -> bytes:
    """The event stream of a /search call whose image input is `file_data`, sent without any upload."""
    data = json.dumps({"data": [file_data, "make it red", K, METHOD, True]}).encode()
    status, answer = request(base_url, "/gradio_api/call/search", "POST", data, {"Content-Type": "application/json"})
    if status != 200:
        return b"event: error\n" + answer
    event_id = json.loads(answer)["event_id"]
    return request(base_url, f"/gradio_api/call/search/{event_id}")[1]


def file_route_probes(base_url: str, secrets: list[Path], anchors: list[str], served: list[str] = ()) -> dict:
    """Ask the server for each file of `secrets` through every file route: GET routes with the path as is,
    climbing out of `anchors` (folders it serves), encoded in several ways, and after an upload whose file name
    climbs out of the upload folder; and a /search call naming the file as its input image, with and without
    Gradio's file metadata. Refused: status 400, 403 or 404 (for the search: an error event). Leaked: the
    answer holds the file's first bytes. `served` (URL paths of files the app must serve) checks the probe
    itself: `served_ok` counts those answered 200."""
    tried, refused, leaks, others = 0, 0, [], []
    uploaded = upload(base_url, "../../../../probe.png", b"probe")
    uploaded_in_place = all(Path(path).name == "probe.png" for path in uploaded) and bool(uploaded)
    upload_folders = [str(Path(path).parent) for path in uploaded]
    for secret in secrets:
        head = secret.read_bytes()[:48]
        variants = path_variants(str(secret), [*anchors, *upload_folders])
        for path in (route.format(variant) for route in GET_ROUTES for variant in variants):
            tried += 1
            status, body = request(base_url, path)
            if head and head in body:
                leaks.append(path)
            elif status in REFUSED:
                refused += 1
            else:
                others.append(f"{status} {path}")
        for file_data in ({"path": str(secret), "meta": {"_type": "gradio.FileData"}}, {"path": str(secret)}, str(secret)):
            tried += 1
            stream = query_with_file(base_url, file_data)
            if head and head in stream:
                leaks.append(f"search input {file_data!r}")
            elif b"event: error" in stream:
                refused += 1
            else:
                others.append(f"search input {file_data!r}: {stream[:200]!r}")
    served_ok = sum(request(base_url, path)[0] == 200 for path in served)
    return {
        "tried": tried,
        "refused": refused,
        "leaked": len(leaks),
        "leaks": leaks[:10],
        "not_refused": others[:10],
        "upload_kept_in_folder": uploaded_in_place,
        "served": len(served),
        "served_ok": served_ok,
    }


def private_files(model: Path, home: Path) -> list[Path]:
    """Files the demo server reads but must never hand out: the model's weights and config, the gallery
    index's files, and /etc/passwd."""
    index_files = sorted(path for path in (home / "demo").glob("world-*/*") if path.is_file())
    return [Path("/etc/passwd"), model / "model.safetensors", model / "config.json", *index_files]


def served_result_paths(url: str, job: tuple[str, str]) -> list[str]:
    """URL paths of the result images of one search, read from a raw call's event stream."""
    path = upload(url, "reference.png", Path(job[0]).read_bytes())[0]
    stream = query_with_file(url, {"path": path, "meta": {"_type": "gradio.FileData"}}).decode()
    data = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")][-1]
    return [urlsplit(item["image"]["url"]).path for item in json.loads(data)[0]]


# ----- the run ----------------------------------------------------------------------------------------------


def run(
    queries: int = QUERIES,
    concurrency: int = CONCURRENCY,
    single: int = SINGLE,
    model: str | None = None,
    home: str | None = None,
) -> dict:
    """Start the demo, run `single` queries one after another, then `queries` in rounds of `concurrency` at
    once, then the oversized uploads and the file route probes; stop it and return the report."""
    home_path = Path(home) if home else Path(tempfile.mkdtemp(prefix="scot-demo-load-"))
    home_path.mkdir(parents=True, exist_ok=True)
    model_path = Path(model).expanduser() if model else bench_model(home_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = start_server(model_path, home_path, port)
    report: dict = {"model": str(model_path), "startup_s": round(time.monotonic() - started, 1)}
    try:
        jobs = query_files(home_path / "queries", max(queries, single))
        clients = Clients(url)
        report["single"] = latency_summary([one_query(clients, job) for job in jobs[:single]])
        rounds, results = [], []
        cpu_before = cpu_seconds(server.pid), cpu_seconds()
        with ThreadPoolExecutor(concurrency) as pool:
            for start in range(0, queries, concurrency):
                results += pool.map(lambda job: one_query(clients, job), jobs[start : start + concurrency])
                rounds.append(memory_mb(server.pid))
        server_cpu, client_cpu = cpu_seconds(server.pid) - cpu_before[0], cpu_seconds() - cpu_before[1]
        report["concurrent"] = latency_summary(results)
        report["cpu_ms_per_query"] = {
            "server": round(1000 * server_cpu / queries, 1),
            "clients": round(1000 * client_cpu / queries, 1),
            "cores": os.cpu_count(),
        }
        report["concurrency"] = concurrency
        report["errors"] = report["single"]["errors"] + report["concurrent"]["errors"]
        report["rss_after_50_mb"], report["rss_after_500_mb"] = rounds[0], rounds[-1]
        report["rss_growth"] = round(rounds[-1] / rounds[0] - 1, 3)
        report["server_log_errors"] = log_errors(home_path / "server.log")
        report["large_uploads"] = large_uploads(url, server.pid, home_path)
        served = served_result_paths(url, jobs[0])
        anchors = sorted({str(Path(unquote(path.split("=", 1)[-1])).parent) for path in served})
        report["file_route_probes"] = file_route_probes(url, private_files(model_path, home_path), anchors, served)
    finally:
        server.terminate()
        server.wait(30)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=QUERIES, help="concurrent queries in all")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="queries at once")
    parser.add_argument("--single", type=int, default=SINGLE, help="queries one at a time first")
    parser.add_argument("--model", help="saved SCOT model folder (default: the world CLIP, fresh Combiner)")
    parser.add_argument("--home", help="$SCOT_HOME of the server (default: a new temporary folder)")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    report = run(args.queries, args.concurrency, args.single, args.model, args.home)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
