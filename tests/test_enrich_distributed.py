"""``accelerate launch`` with 2 CPU processes: enrich_items shares the chunks out and every process gets all rows.

(``--multi_gpu --num_processes 2`` on a machine without a GPU starts two gloo CPU processes; ``--cpu``
alone would start one, as accelerate wants MPI for several CPU processes.)
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chat_server import RuleGenerator
from test_enrich_pipeline import items_dataset

from lamar_hf.enrich import enrich_items

REPO = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, {tests!r})
    from chat_server import RuleGenerator
    from test_enrich_pipeline import items_dataset
    from lamar_hf.enrich import enrich_items
    from lamar_hf.enrich.pipeline import process_state

    generator = RuleGenerator()
    signals = enrich_items(items_dataset(10), generator, chunk_size=2, progress=False)
    state = process_state()
    result = {{"rank": state.process_index, "processes": state.num_processes,
               "generated": [conversation[-1]["content"].splitlines()[0] for conversation in generator.seen],
               "rows": signals.to_list()}}
    with open(f"{{sys.argv[1]}}/rank{{state.process_index}}.json", "w") as handle:
        json.dump(result, handle)
''')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_processes_split_the_items_and_gather_every_row(tmp_path):
    script = tmp_path / "enrich_two.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run([*launch, str(script), str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=280)
    assert process.returncode == 0, process.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["processes"] for rank in ranks] == [2, 2]
    first, second = (set(rank["generated"]) for rank in ranks)
    assert first and second and not first & second  # each process generated its own share
    assert len(first | second) == 10
    single = enrich_items(items_dataset(10), RuleGenerator(), progress=False).to_list()
    assert ranks[0]["rows"] == ranks[1]["rows"] == single  # gathered, in item order, on every process
