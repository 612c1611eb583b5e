"""Write README's "Results" section from the files of ``benchmarks/results/`` (every figure from a results file).

Run ``bash benchmarks/collect_results.sh`` first (it writes those files from the run records), then
``python benchmarks/write_readme_results.py`` from the repository root; it replaces the text between the
"## Results (settings chosen on validation)" and "## Data and citations" headings.
"""
import json
from pathlib import Path

R = Path("benchmarks/results")
def load(p): return json.load(open(R / p))

def cell(part, metric): return f"{part[metric]:.4f} ± {part[metric + '_std']:.4f}"

def rows_md(data, baseline=None, variants=None):
    base = {}
    for d in ([baseline] if baseline else []) + [data]:
        assert d["device"] == data["device"] and d["split_fingerprint"] == data["split_fingerprint"]
        for r in d["rows"]:
            if r["variant"] == "id-only" and not r.get("missing"):
                base[r["backbone"]] = r["test"]["recall@20"]
    out = ["| backbone | variant | chosen setting | validation NDCG@10 | test Recall@10 | test NDCG@10 | test Recall@20 | vs ID-only | test Recall@10 / NDCG@10, history excluded |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        if variants and r["variant"] not in variants: continue
        if r.get("missing"):
            out.append(f"| {r['backbone']} | {r['variant']} | no setting with all 3 seeds | | | | | | |"); continue
        b = base.get(r["backbone"])
        gain = "—" if r["variant"] == "id-only" or b is None else f"{100 * (r['test']['recall@20'] / b - 1):+.1f}%"
        ex = r.get("test_excluding_history")
        exs = f"{ex['recall@10']:.4f} / {ex['ndcg@10']:.4f}" if ex else "—"
        out.append(f"| {r['backbone']} | {r['variant']} | {r['setting']['name']} | {cell(r['validation'], 'ndcg@10')} | "
                   f"{cell(r['test'], 'recall@10')} | {cell(r['test'], 'ndcg@10')} | {cell(r['test'], 'recall@20')} | {gain} | {exs} |")
    return "\n".join(out)

def settings_run(data):
    names = []
    for s in data.get("settings", []):
        if s["setting"] not in names and s.get("seeds"): names.append(s["setting"])
    return ", ".join(names)



beauty = load("amazon_beauty/beauty_sasrec_study.json")
v2 = load("amazon_beauty/beauty_sasrec_v2_variants.json")
gru = load("amazon_beauty/beauty_gru4rec_id_only.json")
bert = load("amazon_beauty/beauty_bert4rec_id_only.json")
toys = load("amazon_toys/toys_sasrec_study.json")
sports = load("amazon_sports/sports_sasrec_id_only.json")

def row(data, variant, backbone="sasrec"):
    return next(r for r in data["rows"] if r["variant"] == variant and r["backbone"] == backbone)

def pct(a, b): return f"{100 * a / b:.1f}%"

def setting_validation(data, name, variant="id-only", backbone="sasrec"):
    entry = next(e for e in data["settings"] if e["setting"] == name and e["variant"] == variant and e["backbone"] == backbone)
    if "validation" not in entry:
        return "(not finished)"
    return f"{entry['validation']['ndcg@10']:.4f}" + ("" if len(entry["seeds"]) == 3 else f", {len(entry['seeds'])} seed{'s' if len(entry['seeds']) > 1 else ''}")

FLAG_ORDER = ["hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_dropout_prob", "attention_dropout_prob",
              "item_dropout_prob", "position_order", "max_history_length", "loss_type", "num_negatives",
              "negative_sharing", "repeat_bias", "repeat_score_learning_rate", "learning_rate",
              "per_device_train_batch_size", "num_train_epochs", "early_stopping_patience"]

def train_command(r):
    values = r["setting"]["values"]
    unused = ("num_negatives", "negative_sharing") if values.get("loss_type") == "ce" else ()  # the full softmax draws none
    flags = [f"--{k} {str(values[k]).lower() if isinstance(values[k], bool) else values[k]}"
             for k in FLAG_ORDER if k in values and k not in unused]
    lines, line = [], "lamar train --dataset outputs/beauty --backbone sasrec"
    for flag in flags:
        if len(line) + len(flag) + 1 > 112:
            lines.append(line + " \\"); line = "   "
        line += " " + flag
    lines.append(line + " \\")
    lines.append("    --output_dir outputs/sasrec-beauty")
    return "\n".join(lines)

ib, it, isp = row(beauty, "id-only"), row(toys, "id-only"), row(sports, "id-only")
END = "repeat score + item dropout 0.2 + positions from the end"
def gain(data, variant):
    return f"{100 * (row(data, variant)['test']['recall@20'] / row(data, 'id-only')['test']['recall@20'] - 1):+.1f}%"

v2_row, meta_row = row(v2, "signals+metadata"), row(beauty, "metadata")
gain_v2 = f"{100 * (v2_row['test']['recall@20'] / ib['test']['recall@20'] - 1):+.1f}%"
v2_vs_metadata = f"{100 * (v2_row['test']['recall@20'] / meta_row['test']['recall@20'] - 1):+.1f}%"


def candidates(data, variant, backbone="sasrec"):
    """The settings ``variant`` ran over every seed, in grid order."""
    return [e["setting"] for e in data["settings"]
            if e["variant"] == variant and e["backbone"] == backbone and not e.get("missing_seeds") and e.get("seeds")]


def short(setting):
    return setting.replace(END, "RecTools options").replace("repeat score + ", "")


candidates_by_variant = "; ".join(
    f"`{variant}`{' (signals v2)' if data is v2 else ''}: " + ", ".join(short(name) for name in candidates(data, variant))
    for data, variant in [(beauty, r["variant"]) for r in beauty["rows"]] + [(v2, "signals+metadata")]
    if candidates(data, variant)
) + " (\"RecTools options\": item dropout 0.2 and positions from the end, with the repeat score)"
with_metadata = [row(beauty, "signals+metadata"), row(beauty, "metadata+attributes"), row(v2, "signals+metadata")]
below = all(r["validation"]["ndcg@10"] < meta_row["validation"]["ndcg@10"]
            and r["test"]["recall@20"] < meta_row["test"]["recall@20"] for r in with_metadata)
signals_over_metadata = (
    "The signals of SmolLM2-135M add nothing the metadata text does not already carry: every variant that adds them to "
    "the metadata (signals v1 or v2 as text, or v1 as learned attribute ids) is below the metadata alone in validation "
    "NDCG@10 and in test Recall@20." if below else
    "Some variant that adds the signals to the metadata is above the metadata alone in validation NDCG@10 or test "
    "Recall@20 (see the rows above)."
)
full_softmax_done = END + " + full softmax" in candidates(beauty, "id-only")
multiview_done = END + " + 1024 negatives + fusion multiview" in candidates(v2, "signals+metadata")
NOT_RUN = [
    "the text variants other than `metadata` and signals v2 + metadata with the RecTools options",
    "negatives per position with the RecTools options", "patience 50",
    "the `gate` fusion" + ("" if multiview_done else " and the `multiview` fusion with the RecTools options"),
    "user signals", "the remaining seeds of the SASRec authors' block" + ("" if full_softmax_done else " and of the full softmax"),
    "1024 negatives on Sports", "text variants of GRU4Rec and BERT4Rec",
]
not_run = ", ".join(NOT_RUN)
def complete_run(name):
    """The sentence of a complete run to early stopping (``amazon_beauty/<name>.json``), or None if not run."""
    if not (R / f"amazon_beauty/{name}.json").exists():
        return None
    data = load(f"amazon_beauty/{name}.json")
    r = row(data, "id-only")
    return (f"`{r['setting']['name']}` (seed {r['seeds'][0]}) trained to early stopping in {r['epochs'][0]:g} epochs and "
            f"{r['train_seconds'][0]:.0f} s on the {data['device']} (`benchmarks/results/amazon_beauty/{name}.json`)")

def bench_epoch(name):
    """Seconds per training epoch and per full-ranking pass of ``benchmarks/results/<name>``'s first variant."""
    data = load(name)
    r = data["results"][0]
    return (f"{r['epoch_seconds_median']:.1f} s per epoch and {r['evaluation_seconds_median']:.1f} s per full-ranking pass "
            f"with {data['machine']['torch_threads']} threads on the {data['machine']['cpu']} (`benchmarks/results/{name}`)")

complete_runs = [c for c in (complete_run("beauty_sasrec_complete_run_full_softmax_two_threads"),
                             complete_run("beauty_sasrec_complete_run_two_threads")) if c]
complete_sentence = (
    "Alone on the machine, two threads are faster. With two threads and validation after every epoch, "
    + "; ".join(complete_runs) + ". One epoch of the full softmax (`benchmarks/bench_train.py --variants "
    "id-per-sequence-repeat-item-dropout-from-end-full-softmax --threads 2`): "
    + bench_epoch("bench_train_full_softmax_2threads.json") + "; with 1024 negatives: "
    + bench_epoch("bench_train_2threads.json") + "."
) if complete_runs else ""

def complete_row(data, variant):
    """The chosen row of ``variant`` in ``data``, or None when the file is absent or no setting has all its seeds."""
    found = next((r for r in data["rows"] if r["variant"] == variant), None) if data else None
    return found if found and not found.get("missing") else None


def optional(name):
    return load(name) if (R / name).exists() else None


def seeds_done(data, variant):
    return max((len(e.get("seeds", [])) for e in data["settings"] if e["variant"] == variant), default=0)


# Tables whose run records are kept in the repository (benchmarks/results/<dataset>/runs/<table>/).
rerun = optional("amazon_beauty/beauty_sasrec_full_softmax.json")
rectools = optional("amazon_beauty/beauty_sasrec_rectools_training.json")
rerun_text = ""
if rerun:
    rm, rs = complete_row(rerun, "metadata"), complete_row(rerun, "signals+metadata")
    if rm and rs:
        versus = (f"Signals v2 + metadata against the metadata alone in this table: validation NDCG@10 "
                  f"{cell(rs['validation'], 'ndcg@10')} against {cell(rm['validation'], 'ndcg@10')}, test Recall@20 "
                  f"{100 * (rs['test']['recall@20'] / rm['test']['recall@20'] - 1):+.1f}%. With all three seeds the "
                  f"full softmax is {'above' if rs['validation']['ndcg@10'] > v2_row['validation']['ndcg@10'] else 'below'}"
                  f" the setting chosen for signals v2 + metadata in the v2 table on validation "
                  f"({v2_row['validation']['ndcg@10']:.4f}, {short(v2_row['setting']['name'])}).")
    else:
        versus = (f"Not finished: metadata {seeds_done(rerun, 'metadata')} and signals v2 + metadata "
                  f"{seeds_done(rerun, 'signals+metadata')} of 3 seeds.")
    rerun_text = f"""

The metadata text and signals v2 + metadata with the full softmax, trained again with their run records kept in the
repository (`benchmarks/results/amazon_beauty/beauty_sasrec_full_softmax.md`, records in
`benchmarks/results/amazon_beauty/runs/beauty_sasrec_full_softmax/`), against the ID-only row above (same device,
same split):

{rows_md(rerun, beauty)}

{versus}"""
if rectools:
    rr = complete_row(rectools, "id-only")
    if rr:
        higher = rr["validation"]["ndcg@10"] > ib["validation"]["ndcg@10"]
        outcome = (f"higher, so on validation it is the better ID-only setting: test Recall@10 "
                   f"{cell(rr['test'], 'recall@10')}, NDCG@10 {cell(rr['test'], 'ndcg@10')} "
                   f"({pct(rr['test']['recall@10'], 0.0921)} / {pct(rr['test']['ndcg@10'], 0.0531)} of eSASRec's)"
                   if higher else "lower, so the chosen setting stays")
        rectools_sentence = (f"validation NDCG@10 {cell(rr['validation'], 'ndcg@10')} against "
                             f"{cell(ib['validation'], 'ndcg@10')} of the chosen setting: {outcome}")
    else:
        rectools_sentence = f"not finished ({seeds_done(rectools, 'id-only')} of 3 seeds)"
    rerun_text += f"""

RecTools' block and training with the full softmax, ID-only (`--residual_from_norm true --hidden_act relu
--intermediate_size 64 --initialization xavier_normal --train_sampling_strategy random --max_grad_norm 0`: the SASRec
authors' block, Xavier-normal weights, users in random order, no gradient clipping;
`benchmarks/results/amazon_beauty/beauty_sasrec_rectools_training.md`, records beside it): {rectools_sentence}."""


text = f"""## Results (settings chosen on validation)

One table per dataset, quoted from `benchmarks/results/<dataset>/<experiment>.md`, which `benchmarks/experiment.py`
writes from run records only: for each backbone and variant every setting of the grid (`benchmarks/configs/`) that
was run is trained over 3 seeds, the setting with the best mean validation NDCG@10 is chosen, and only then are its
test figures read. Each table is one device and one split fingerprint (both named in its file); full ranking over all
items, leave-one-out, nothing filtered (the last column, for comparison with evaluators that filter the history as
RecBole and RecTools do, is the same chosen models with every history item removed). Every run below was trained on
one 2-core **AMD EPYC**, one torch thread per run, with other runs beside it. `lamar report --dataset outputs/beauty
--experiment benchmarks/results/amazon_beauty/beauty_sasrec_study.json --out outputs/report` shows the Beauty table
and a chart.

The base of every SASRec grid is eSASRec's SASRec+SS settings (64 factors, 1 block, 1 head, dropout 0.2, length 50,
256 sampled negatives, lr 1e-3, batch 128, up to 200 epochs) with the negatives drawn once per sequence and
early-stopping patience 20. Variants: `metadata` (the item's title, brand and categories text, MiniLM), `signals`
(scenario, intent and topic of the shipped signals v1), `signals+metadata`, `attributes` (the signals as learned
cluster ids, `lamar_hf/resources/signals/amazon_beauty-v1-attributes.parquet`), `metadata+attributes`, and each signal
kind alone (`scenario`, `intent`, `topic`).

Amazon Beauty, SASRec (`benchmarks/results/amazon_beauty/beauty_sasrec_study.md`; settings run: {settings_run(beauty)};
each variant's table there lists which of them it ran):

{rows_md(beauty)}

The same with the signals v2 (SmolLM2 + LoRA adapter; `benchmarks/results/amazon_beauty/beauty_sasrec_v2_variants.md`;
settings run: {settings_run(v2)}), against the ID-only row above (same device, same split):

{rows_md(v2, beauty)}{rerun_text}

Amazon Beauty, GRU4Rec and BERT4Rec ID-only (`beauty_gru4rec_id_only.md`, `beauty_bert4rec_id_only.md` beside it;
settings run: GRU4Rec {settings_run(gru)}, BERT4Rec {settings_run(bert)}):

{rows_md(gru)}
{chr(10).join(rows_md(bert).splitlines()[2:])}

Amazon Toys, SASRec (`benchmarks/results/amazon_toys/toys_sasrec_study.md`; settings run: {settings_run(toys)}; no
signals: Toys is not enriched yet; the metadata variant was not run with the new options):

{rows_md(toys)}

Amazon Sports, SASRec ID-only (`benchmarks/results/amazon_sports/sports_sasrec_id_only.md`; settings run:
{settings_run(sports)}; no titles in its data, so no text variants):

{rows_md(sports)}

What the tables say. Two options of RecTools' SASRec, the implementation eSASRec benchmarks, lifted the ID-only
SASRec on validation: dropping out the item-table rows a training step reads and scores (`--item_dropout_prob 0.2`)
and counting positions from the most recent item (`--position_order from_end`). Beauty's mean validation NDCG@10:
{setting_validation(beauty, 'repeat score + dropout 0.5')} with dropout 0.5 (the earlier choice), {setting_validation(beauty, 'repeat score + item dropout 0.2')} with item dropout,
{setting_validation(beauty, 'repeat score + item dropout 0.2 + positions from the end')} with positions from the end as well, {setting_validation(beauty, 'repeat score + item dropout 0.2 + positions from the end + 1024 negatives')} with 1024 negatives per sequence on top, {setting_validation(beauty, END + ' + full softmax')} with the softmax over every item instead; item dropout
with dropout 0.5 ({setting_validation(beauty, 'repeat score + dropout 0.5 + item dropout 0.2')}) or with 256 factors ({setting_validation(beauty, 'repeat score + hidden 256 + item dropout 0.2')}) did worse than with dropout 0.2. Toys:
{setting_validation(toys, 'repeat score')} with the repeat score, {setting_validation(toys, 'repeat score + item dropout 0.2 + positions from the end')} with item dropout and positions from the end, {setting_validation(toys, 'repeat score + item dropout 0.2 + positions from the end + 1024 negatives')} with 1024 negatives on top.
The SASRec authors' block (RecTools' `SASRecTransformerLayer`: `--residual_from_norm true --hidden_act relu
--intermediate_size 64`) with item dropout and positions from the end reached {setting_validation(beauty, 'repeat score + item dropout 0.2 + positions from the end + SASRec block')} on Beauty, as the
standard block with the same options. BERT4Rec's mask probability (mean validation NDCG@10): 0.6
{setting_validation(bert, 'mask 0.6', backbone='bert4rec')}, 0.4 {setting_validation(bert, 'mask 0.4', backbone='bert4rec')}, 0.2 {setting_validation(bert, 'mask 0.2', backbone='bert4rec')} (a setting with fewer than 3 seeds is not a candidate). Against eSASRec's SASRec+SS on this
split (`blondered/transformer_benchmark`; negatives per position, patience 50; its leave-one-out config file says
256 factors, its README 64), the chosen ID-only models reach {pct(ib['test']['recall@10'], 0.0921)} / {pct(ib['test']['ndcg@10'], 0.0531)} of its Beauty
Recall@10 / NDCG@10 (0.0921 / 0.0531), {pct(it['test']['recall@10'], 0.0970)} / {pct(it['test']['ndcg@10'], 0.0580)} on Toys (0.0970 / 0.0580) and
{pct(isp['test']['recall@10'], 0.0569)} / {pct(isp['test']['ndcg@10'], 0.0314)} on Sports (0.0569 / 0.0314; validation NDCG@10 {setting_validation(sports, 'repeat score')} with the repeat score,
{setting_validation(sports, END)} with item dropout and positions from the end). With the metadata text (not eSASRec's setting, which reads item ids only), the chosen Beauty SASRec reaches
{row(beauty, 'metadata')['test']['recall@10']:.4f} / {row(beauty, 'metadata')['test']['ndcg@10']:.4f} ({pct(row(beauty, 'metadata')['test']['recall@10'], 0.0921)} / {pct(row(beauty, 'metadata')['test']['ndcg@10'], 0.0531)}).

The text variants with the RecTools options (mean validation NDCG@10): the metadata {setting_validation(beauty, END + ' + 1024 negatives', 'metadata')} with 1024
negatives, {setting_validation(beauty, END + ' + full softmax', 'metadata')} with the full softmax; signals v2 + metadata {setting_validation(v2, END + ' + 1024 negatives', 'signals+metadata')} with 1024 negatives,
{setting_validation(v2, END + ' + full softmax', 'signals+metadata')} with the full softmax, {setting_validation(v2, END + ' + 1024 negatives + fusion multiview', 'signals+metadata')} with 1024 negatives and the `multiview` fusion (each text kind a
view of its own, weighed per item) instead of their sum.

Settings each Beauty SASRec variant ran over all 3 seeds (its candidates): {candidates_by_variant}. A variant with
fewer candidates than ID-only is compared with an ID-only model chosen from a wider grid. Against the validation-chosen ID-only models: the metadata text {gain(beauty, 'metadata')} test Recall@20 on
Beauty ({row(beauty, 'metadata')['setting']['name']}), {gain(toys, 'metadata')} on Toys (earlier settings only); signals v2 + metadata {gain_v2} on Beauty
({row(v2, 'signals+metadata')['setting']['name']}), that is {v2_vs_metadata} against the metadata alone. {signals_over_metadata} Without the metadata,
against the ID-only model: the three signals {gain(beauty, 'signals')}, one kind alone {gain(beauty, 'scenario')} / {gain(beauty, 'intent')} / {gain(beauty, 'topic')} (scenario / intent / topic),
as attribute ids {gain(beauty, 'attributes')}. Not yet run under this protocol: {not_run}. The tables of earlier protocols are kept as history in `benchmarks/results/archive/`; no claim rests on them.

The validation-chosen Beauty SASRec, as one command:

```bash
{train_command(ib)}
```

Run it (finished runs are reused and a run cut short continues from its checkpoint, so the command can be repeated
until the grid is done; `collect` writes the table of whatever runs there are). Each run leaves its record in
`benchmarks/results/amazon_beauty/runs/beauty_sasrec/`, which git keeps (not the logs and checkpoints beside it):
the tables collected before this was so read records that were lost with the machine that ran them, and are kept as
they were collected.

```bash
python benchmarks/experiment.py prepare --dataset outputs/beauty \\
    --signals_file lamar_hf/resources/signals/amazon_beauty-v1-attributes.parquet
python benchmarks/experiment.py run --config benchmarks/configs/beauty_sasrec.yaml --jobs 2 --threads 1
python benchmarks/experiment.py collect --config benchmarks/configs/beauty_sasrec.yaml \\
    --runs benchmarks/results/amazon_beauty/runs/beauty_sasrec --name beauty_sasrec_study
```

Train on CPU with one torch thread per process (`--threads 1`, or `OMP_NUM_THREADS=1`) when several runs share the
cores: two threads per process on two shared cores made an epoch up to 10x slower here. {complete_sentence}

"""
readme = Path("README.md").read_text()
start = readme.index("## Results (settings chosen on validation)")
end = readme.index("## Data and citations")
Path("README.md").write_text(readme[:start] + text + readme[end:])
print("README results section written")
