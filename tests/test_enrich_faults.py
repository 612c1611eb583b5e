"""Enrichment that survives its generator, its own kill and its user.

Endpoint faults come from the local chat server (127.0.0.1, bounded in requests and time) answering
503, 429 with ``Retry-After``, sleeping past the timeout, or failing a fixed share of requests; the
kills are real ``SIGKILL``s of a subprocess. Retry waits are tiny (base 0.01 s) to keep the wall time small.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from chat_server import ChatServer, RuleGenerator
from datasets import load_dataset
from test_enrich_pipeline import items_dataset

from lamar_hf.enrich import DEFAULT_DECODING, RETRY, EndpointGenerator, enrich_items, status_counts, write_signals
from lamar_hf.enrich.config import RetryPolicy
from lamar_hf.enrich.pipeline import SIGNALS_FILE, RowCache, recover_signals

TESTS = Path(__file__).resolve().parent
QUICK = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_seconds=10.0)


@pytest.fixture
def server():
    with ChatServer(RuleGenerator(), model="org/rule-model", revision="rev-7", lifetime=120) as running:
        yield running


def prompts_asked(server) -> Counter:
    return Counter(entry["prompt"].splitlines()[0] for entry in server.log)


def enrich(server, items, cache_dir=None, requests_in_flight=4, retry=QUICK, **options):
    generator = EndpointGenerator(server.url, requests_in_flight=requests_in_flight, retry=retry,
                                  **{key: options.pop(key) for key in ("timeout",) if key in options})
    return enrich_items(items, generator, cache_dir=cache_dir, progress=False, **options)


# -- transient errors ---------------------------------------------------------------------------
def test_a_server_that_stays_down_gives_unavailable_rows_and_after_it_recovers_a_rerun_asks_again(server, tmp_path):
    items = items_dataset(20)
    server.fail_first(10**6, status=503)
    down = enrich(server, items, tmp_path, requests_in_flight=1)
    assert status_counts(down) == {"ok": 0, "retried": 0, "invalid": 0, "unavailable": 20}
    assert all(detail.startswith("generator: TransientError: HTTP 503") for detail in down["status_detail"])
    # Bounded: the first answer tries 3 times; once it gave up, the others try once each, not 3 times.
    assert sorted(prompts_asked(server).values()) == [1] * 19 + [3]
    assert len(RowCache(tmp_path)) == 0  # nothing cached as final

    server.healthy()
    before = len(server.log)
    up = enrich(server, items, tmp_path)
    assert len(server.log) - before == 20  # the same command asks for every row again
    assert set(up["status"]) == {"ok"}


def test_a_rerun_regenerates_exactly_the_unavailable_rows(server, tmp_path):
    items = items_dataset(8)
    server.fail_when("Product 2 gentle", status=502)
    server.fail_when("Product 5 gentle", status=503)
    first = enrich(server, items, tmp_path)
    by_id = dict(zip(first["item_id"], first["status"]))
    assert by_id == {n: "unavailable" if n in (2, 5) else "ok" for n in range(1, 9)}
    server.healthy()
    before = len(server.log)
    second = enrich(server, items, tmp_path)
    assert sorted(entry["prompt"].split("Product ")[1].split()[0] for entry in server.log[before:]
                  if "Product " in entry["prompt"]) == ["2", "5"]
    assert set(second["status"]) == {"ok"}
    in_process = enrich_items(items, RuleGenerator(), progress=False)
    assert [second[name] for name in ("scenario", "intent", "topic")] == [
        in_process[name] for name in ("scenario", "intent", "topic")]


def test_429_with_retry_after_is_waited_out_and_does_not_use_up_the_quality_retry(server):
    server.fail_first(1, status=429, retry_after="1")
    signals = enrich(server, items_dataset(3))
    assert signals["status"] == ["ok"] * 3
    assert all(json.loads(decoding) == DEFAULT_DECODING.to_dict() for decoding in signals["decoding"])
    assert all(request["temperature"] == 0.0 for request in server.requests)  # no sampled retry was spent
    for prompt in {entry["prompt"] for entry in server.log}:
        times = [entry["time"] for entry in server.log if entry["prompt"] == prompt]
        assert len(times) == 2 and times[1] - times[0] >= 0.95  # the server's Retry-After, not the 0.01 s backoff


def test_a_retry_after_beyond_the_time_bound_gives_up_at_once(server):
    server.fail_first(1, status=429, retry_after="3600")
    signals = enrich(server, items_dataset(2), retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_seconds=30))
    assert signals["status"] == ["unavailable"] * 2 and "HTTP 429" in signals["status_detail"][0]
    assert len(server.log) == 2


def test_the_quality_retry_keeps_its_own_decoding_after_a_transient_error(tmp_path):
    with ChatServer(RuleGenerator(copy_title_first=True), model="org/rule-model", lifetime=120) as running:
        running.fail_first(1, status=503)
        signals = enrich(running, items_dataset(3))
        assert signals["status"] == ["retried"] * 3
        assert all(json.loads(decoding) == RETRY.to_dict() for decoding in signals["decoding"])
        assert set(signals["status_detail"]) == {"first answer: scenario: copy of the title"}
        sampled = [request for request in running.requests if request["temperature"] > 0]
        assert len(sampled) == 3 and all(request["seed"] == RETRY.seed for request in sampled)


def test_random_503s_are_retried_until_every_row_is_answered(server):
    server.fail_share(0.3, seed=3)
    signals = enrich(server, items_dataset(40), requests_in_flight=8,
                     retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05, max_seconds=10))
    assert set(signals["status"]) == {"ok"}
    assert sum(entry["status"] == 503 for entry in server.log) >= 5  # some requests did fail


def test_a_request_past_the_timeout_is_asked_again(server):
    server.sleep_first(1, seconds=1.0)
    signals = enrich(server, items_dataset(2), timeout=0.3)
    assert signals["status"] == ["ok", "ok"]
    assert sorted(prompts_asked(server).values()) == [2, 2]


def test_a_refused_connection_is_unavailable(server):
    generator = EndpointGenerator(server.url, retry=QUICK)
    server.__exit__(None, None, None)  # the server goes away after the generator met it
    signals = enrich_items(items_dataset(2), generator, progress=False)
    assert signals["status"] == ["unavailable"] * 2
    assert "Connection" in signals["status_detail"][0] or "refused" in signals["status_detail"][0]


def test_provenance_is_the_served_model_for_live_and_cached_rows(server, tmp_path):
    live = enrich(server, items_dataset(3), tmp_path)
    before = len(server.requests)
    cached = enrich(server, items_dataset(3), tmp_path)
    assert len(server.requests) == before  # every row from the cache
    assert cached.to_list() == live.to_list()
    assert set(cached["generator"]) == {"org/rule-model"} and set(cached["generator_revision"]) == {"rev-7"}


# -- the row cache -----------------------------------------------------------------------------
def test_changing_limit_or_chunk_size_keeps_every_cached_row(tmp_path):
    items = items_dataset(10)
    enrich_items(items.select(range(5)), RuleGenerator(), cache_dir=tmp_path, chunk_size=2, progress=False)
    more = RuleGenerator()
    signals = enrich_items(items, more, cache_dir=tmp_path, chunk_size=4, progress=False)
    assert more.prompts == 5  # only items 6..10
    fewer = RuleGenerator()
    again = enrich_items(items.select(range(7)), fewer, cache_dir=tmp_path, chunk_size=3, progress=False)
    assert fewer.prompts == 0 and again.to_list() == signals.select(range(7)).to_list()


def test_a_corrupt_row_cache_is_set_aside_and_rebuilt(tmp_path, caplog):
    (tmp_path / RowCache.FILE_NAME).write_bytes(b"not a database at all" * 100)
    signals = enrich_items(items_dataset(2), RuleGenerator(), cache_dir=tmp_path, progress=False)
    assert set(signals["status"]) == {"ok"} and len(RowCache(tmp_path)) == 2
    assert list(tmp_path.glob(f"{RowCache.FILE_NAME}.corrupt-*")) and "not a readable enrichment cache" in caplog.text


KILLED_ENRICH = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from chat_server import RuleGenerator
    from test_enrich_pipeline import items_dataset
    from lamar_hf.enrich import enrich_items

    marker = Path(sys.argv[2])

    class Stalling(RuleGenerator):
        """Answers 6 prompts (3 batches of 2), then hangs inside the 4th batch until it is killed."""
        def generate(self, conversations, decoding=None, progress=None, answer_signals=None):
            if self.prompts >= 6:
                marker.write_text("stalled")
                time.sleep(120)
            return super().generate(conversations, decoding, progress, answer_signals)

    generator = Stalling()
    generator.batch_size = 2
    enrich_items(items_dataset(10), generator, cache_dir=sys.argv[1], chunk_size=10, progress=False)
''')


def run_until_marker(script: str, *arguments: str, marker: Path) -> int:
    process = subprocess.Popen([sys.executable, "-c", script, *arguments], cwd=TESTS.parent)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the subprocess never reached the point to kill it at"
        os.kill(process.pid, signal.SIGKILL)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.timeout(180)
def test_a_sigkill_in_the_middle_of_a_chunk_keeps_every_finished_row(tmp_path):
    marker = tmp_path / "stalled"
    returncode = run_until_marker(KILLED_ENRICH.format(tests=str(TESTS)), str(tmp_path / "cache"), str(marker),
                                  marker=marker)
    assert returncode == -signal.SIGKILL
    assert len(RowCache(tmp_path / "cache")) == 6  # three batches of the one chunk of 10 in progress
    resumed = RuleGenerator()
    signals = enrich_items(items_dataset(10), resumed, cache_dir=tmp_path / "cache", chunk_size=3, progress=False)
    assert resumed.prompts == 4  # only the rows the killed run had not finished, whatever the chunk size
    assert signals.to_list() == enrich_items(items_dataset(10), RuleGenerator(), progress=False).to_list()


# -- the final write ---------------------------------------------------------------------------
KILLED_WRITE = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from chat_server import RuleGenerator
    from test_enrich_pipeline import items_dataset
    from lamar_hf.enrich import enrich_items, write_signals

    signals = enrich_items(items_dataset(4), RuleGenerator(), progress=False)
    rename = Path.rename

    def rename_then_die(self, target):
        moved = rename(self, target)
        if self.name == "signals":  # the old folder is set aside; the new one is not in place yet
            Path(sys.argv[2]).write_text("between the renames")
            os.kill(os.getpid(), signal.SIGKILL)
        return moved

    Path.rename = rename_then_die
    write_signals(signals, sys.argv[1])
''')


@pytest.mark.timeout(180)
def test_a_sigkill_between_the_renames_loses_no_signals_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out"
    write_signals(enrich_items(items_dataset(3), RuleGenerator(), progress=False), out)
    marker = tmp_path / "killed"
    returncode = run_until_marker(KILLED_WRITE.format(tests=str(TESTS)), str(out), str(marker), marker=marker)
    assert returncode == -signal.SIGKILL
    assert not (out / "signals").exists()  # the window the kill hit
    leftovers = sorted(path.name.split("-")[1] for path in out.glob(".signals-*"))
    assert leftovers == ["old", "tmp"]
    recover_signals(out)  # what every later write_signals and lamar enrich does first
    assert load_dataset("parquet", data_files=str(out / SIGNALS_FILE), split="train")["item_id"] == [1, 2, 3]
    assert not list(out.glob(".signals-*"))


def test_stale_staging_folders_are_removed_but_not_those_of_a_running_process(tmp_path):
    out = tmp_path / "out"
    write_signals(enrich_items(items_dataset(2), RuleGenerator(), progress=False), out)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
        (out / f".signals-tmp-{dead}-0badf00d").mkdir()
        (out / ".signals-1a2b3c4d").mkdir()  # named by an older version
        (out / f".signals-tmp-{sleeper.pid}-12345678").mkdir()
        write_signals(enrich_items(items_dataset(3), RuleGenerator(), progress=False), out)
        assert sorted(path.name for path in out.glob(".signals-*")) == [f".signals-tmp-{sleeper.pid}-12345678"]
    finally:
        sleeper.kill()
        sleeper.wait()


# -- lamar enrich ------------------------------------------------------------------------------
def bench_folder(root: Path, count: int) -> Path:
    folder = root / "bench"
    (folder / "items").mkdir(parents=True)
    items_dataset(count).to_parquet(str(folder / "items" / "train-00000-of-00001.parquet"))
    return folder


def test_lamar_enrich_through_an_endpoint_takes_every_option_and_fails_below_the_validity(server, tmp_path, capsys):
    from lamar_hf.cli import main

    folder = bench_folder(tmp_path, 6)
    out = tmp_path / "out"
    args = ["enrich", "--items", str(folder), "--out", str(out), "--generator", server.url, "--exemplars", "none",
            "--cache-dir", str(tmp_path / "cache"), "--requests-in-flight", "2", "--timeout", "5",
            "--token", "secret", "--retry-attempts", "2", "--retry-seconds", "5"]
    server.fail_first(10**6, status=503)
    assert main(args) == 1  # 0% valid is an error, with the default --min-validity 0.9
    err = capsys.readouterr().err
    assert "validity 0.0% is below --min-validity 90%" in err and str(out / SIGNALS_FILE) in err
    assert "6 unavailable" in err
    assert set(server.authorizations) == {"Bearer secret"}

    server.healthy()
    assert main(args) == 0
    signals = load_dataset("parquet", data_files=str(out / SIGNALS_FILE), split="train")
    assert set(signals["status"]) == {"ok"} and set(signals["generator"]) == {"org/rule-model"}
    manifest = json.loads((out / "lamar_enrich.json").read_text())
    assert manifest["generated"] == 6 and manifest["generator_revision"] == "rev-7"
    assert "secret" not in json.dumps(manifest)


def test_lamar_enrich_refuses_to_write_fewer_rows_over_a_fuller_signals_config(server, tmp_path, capsys):
    from lamar_hf.cli import main

    folder = bench_folder(tmp_path, 12)
    write_signals(enrich_items(items_dataset(12), RuleGenerator(), progress=False), folder)
    args = ["enrich", "--items", str(folder), "--out", str(folder), "--generator", server.url, "--limit", "5",
            "--exemplars", "none", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds 12 rows and this run would write 5" in err and "--overwrite" in err
    assert server.model_listings == 0 and not server.requests  # refused before any work
    assert len(load_dataset("parquet", data_files=str(folder / SIGNALS_FILE), split="train")) == 12
    assert main([*args, "--overwrite"]) == 0
    assert len(load_dataset("parquet", data_files=str(folder / SIGNALS_FILE), split="train")) == 5


# -- the prepared folder (lamar prepare) shares the same swap --------------------------------------
KILLED_SAVE = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    from lamar_hf.data import Benchmark, leave_one_out
    from lamar_hf.data.items import item_row, items_dataset

    out = Path(sys.argv[1])
    benchmark = Benchmark("tiny", items_dataset([item_row(n, f"ASIN{n}") for n in range(1, 6)]),
                          leave_one_out({1: [1, 2, 3, 4], 2: [5, 4, 3]}))
    rename = Path.rename

    def rename_then_die(self, target):
        moved = rename(self, target)
        if self == out:
            Path(sys.argv[2]).write_text("between the renames")
            os.kill(os.getpid(), signal.SIGKILL)
        return moved

    Path.rename = rename_then_die
    benchmark.save(out, overwrite=True)
''')


@pytest.mark.timeout(180)
def test_a_sigkill_between_the_renames_of_lamar_prepare_keeps_the_old_folder_and_stale_staging_goes(tmp_path):
    from lamar_hf.data import Benchmark, leave_one_out, load_prepared
    from lamar_hf.data.items import item_row
    from lamar_hf.data.items import items_dataset as benchmark_items

    out = tmp_path / "beauty"
    Benchmark("tiny", benchmark_items([item_row(n, f"ASIN{n}") for n in range(1, 4)]),
              leave_one_out({1: [1, 2, 3]})).save(out)
    marker = tmp_path / "killed"
    assert run_until_marker(KILLED_SAVE, str(out), str(marker), marker=marker) == -signal.SIGKILL
    assert not out.exists() and sorted(path.name.split(".")[2].split("-")[0] for path in tmp_path.glob(".beauty.*")) == [
        "old", "tmp"]
    (tmp_path / ".beauty.tmp-1a2b3c4d").mkdir()  # left by an older version
    with pytest.raises(Exception, match="not empty"):  # the next run puts the old folder back, and keeps it
        Benchmark("tiny", benchmark_items([item_row(1, "ASIN1")]), leave_one_out({1: [1, 1, 1]})).save(out)
    assert len(load_prepared(out).items) == 3
    assert not list(tmp_path.glob(".beauty.*"))
