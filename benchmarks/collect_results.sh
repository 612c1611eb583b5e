#!/usr/bin/env bash
# Write every table of benchmarks/results/<dataset>/ from the run records of `benchmarks/experiment.py run`
# (default: outputs/experiments/<dataset>/runs*), then `python benchmarks/write_readme_results.py` for README.
# Each table lists the settings that were run; a setting is a candidate only once all its seeds are done.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
E=${EXPERIMENTS:-outputs/experiments}
END='repeat score + item dropout 0.2 + positions from the end'
BEAUTY_SETTINGS="reference,repeat score,repeat score + dropout 0.3,repeat score + dropout 0.5,repeat score + hidden 256"
BEAUTY_SETTINGS+=",repeat score + item dropout 0.2,repeat score + dropout 0.5 + item dropout 0.2"
BEAUTY_SETTINGS+=",repeat score + hidden 256 + item dropout 0.2,$END,$END + 1024 negatives,$END + full softmax"
BEAUTY_SETTINGS+=",repeat score + fusion init,repeat score + fusion semantic_nullspace,$END + SASRec block"
# The tables collected before the run records were kept in the repository read outputs/experiments/ (ignored, lost
# with the machine that ran them): such a table is collected again only where its records folder exists, and otherwise
# stays as committed. New runs write their records to benchmarks/results/<dataset>/runs/<table>/ (committed).
collect() {
  local runs
  runs=$(printf '%s\n' "$@" | sed -n '/^--runs$/{n;p;q}')
  if [ ! -d "$runs" ]; then echo "skip $* (no run records in $runs: the committed table stays)" >&2; return; fi
  echo "collect $*" >&2; $PY benchmarks/experiment.py collect "$@" > /dev/null
}
collect --config benchmarks/configs/beauty_sasrec.yaml \
  --variants id-only,metadata,signals,signals+metadata,attributes,metadata+attributes,scenario,intent,topic \
  --settings "$BEAUTY_SETTINGS" --runs $E/amazon_beauty/runs --name beauty_sasrec_study
collect --config benchmarks/configs/beauty_sasrec.yaml --variants signals+metadata \
  --settings "repeat score + fusion init,$END,$END + 1024 negatives,$END + full softmax,$END + 1024 negatives + fusion multiview" \
  --runs $E/amazon_beauty/runs-v2 --name beauty_sasrec_v2_variants
# Complete runs to early stopping, each alone on the machine with two threads (seed 0): the speed of a whole run.
collect --config benchmarks/configs/beauty_sasrec.yaml --variants id-only --settings "$END + 1024 negatives" --seeds 0 \
  --runs $E/amazon_beauty/runs-speed2 --name beauty_sasrec_complete_run_two_threads
collect --config benchmarks/configs/beauty_sasrec.yaml --variants id-only --settings "$END + full softmax" --seeds 0 \
  --runs $E/amazon_beauty/runs-speed-full-softmax --name beauty_sasrec_complete_run_full_softmax_two_threads
collect --config benchmarks/configs/beauty_gru4rec.yaml --variants id-only --settings 'reference,dropout 0.1' \
  --runs $E/amazon_beauty/runs --name beauty_gru4rec_id_only
collect --config benchmarks/configs/beauty_bert4rec.yaml --variants id-only --settings 'mask 0.2,mask 0.4,mask 0.6' \
  --runs $E/amazon_beauty/runs --name beauty_bert4rec_id_only
collect --config benchmarks/configs/toys_sasrec.yaml --variants id-only,metadata \
  --settings "reference,repeat score,repeat score + dropout 0.5,$END,$END + 1024 negatives,repeat score + fusion init" \
  --runs $E/amazon_toys/runs --name toys_sasrec_study
collect --config benchmarks/configs/sports_sasrec.yaml --variants id-only --settings "repeat score,$END" \
  --runs $E/amazon_sports/runs --name sports_sasrec_id_only
# The metadata text and signals v2 + metadata with the full softmax, re-run with committed records (session 14): the
# setting chosen for the metadata above, and the best of signals v2 + metadata on validation with two seeds.
collect --config benchmarks/configs/beauty_sasrec.yaml --variants metadata,signals+metadata \
  --settings "$END + full softmax" --runs benchmarks/results/amazon_beauty/runs/beauty_sasrec_full_softmax \
  --name beauty_sasrec_full_softmax
# RecTools' block and training (Xavier-normal, users in random order, no clipping) with the full softmax, ID-only.
collect --config benchmarks/configs/beauty_sasrec.yaml --variants id-only \
  --settings "$END + full softmax + RecTools block and training" \
  --runs benchmarks/results/amazon_beauty/runs/beauty_sasrec_rectools_training --name beauty_sasrec_rectools_training
echo "tables written under benchmarks/results/"
