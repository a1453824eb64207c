#!/usr/bin/env bash
# The paper's studies as runs of scripts/run_comparison.sh (resumable: a row whose JSON
# exists is skipped), one JSON per row and seed in OUT, for `python -m bvae_tf.report`.
#
#   scripts/run_studies.sh STUDY DATA OUT [SEEDS]
#
# SEEDS: 3 for rq1 and rq2 (the comparison's and the ablation bars'), 1 for the sweeps
# (rq2_weights, rq3_d, rq4), unless given.
#
# STUDY: rq1 (every comparison row; on UB, a DATA folder named UB, the inductive ones,
# EASE with EASE_FLAGS="--ease-dtype float32 --ease-factored" unless EASE_FLAGS is set),
# rq2 (ablations and BASE's replacements),
# rq2_weights (fixed loss weights in place of SDWL: the first two modelled behaviors'
# weights in {0.1, ..., 0.9} and the third's 1 - both, zero weights omitted: 36 runs,
# the 6 of the step-0.2 sub-grid first; JD: purchase, click, favourite; UB, whose click
# is not modelled: purchase, favourite, cart), rq3_d
# (d in {50, 150, 200}; d = 100 is the bvae row), rq4 (behaviors added one at a time,
# in the paper's order, those with train data in DATA).
# Prints the number of runs and a compute estimate before starting (the median wall
# time of the runs already in OUT; without any, of the dataset's kept runs in
# docs/results/<data folder's name>; else 20 minutes: a BVAE run on JD with 2 CPU
# cores, one run at a time). DRY_RUN=1 lists the rows with runs not done yet instead
# of running them, after the checks a run makes first (scripts/run_comparison.sh's
# DRY_RUN=1 lists their commands).
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
if (( $# < 3 || $# > 4 )); then
  echo "usage: scripts/run_studies.sh STUDY DATA OUT [SEEDS]; STUDY: rq1 rq2 rq2_weights rq3_d rq4 (--help)" >&2
  (( $# < 5 )) || echo "(got $# arguments; rows are chosen by STUDY: scripts/run_comparison.sh runs given rows)" >&2
  exit 2
fi
STUDY=$1 DATA=$2 OUT=$3
case $STUDY in rq1 | rq2) SEEDS=${4:-3} ;; *) SEEDS=${4:-1} ;; esac
# DATA and OUT are read from the caller's folder (run_comparison.sh passes them on
# relative to the repository root).
DATA=$(realpath -s -m -- "$DATA")
OUT=$(realpath -s -m -- "$OUT")
cd "$(dirname "$0")/.."
# (the same checks as run_comparison.sh, so that DRY_RUN refuses what a run would)
whole() {  # NAME VALUE LOW
  [[ $2 =~ ^[0-9]{1,9}$ ]] && (( 10#$2 >= $3 )) \
    || { echo "$1 must be a whole number >= $3 of at most 9 digits, got '$2'" >&2; exit 2; }
}
whole SEEDS "$SEEDS" 1
[[ -z ${EPOCHS:-} ]] || whole EPOCHS "$EPOCHS" 1
[[ -z ${PATIENCE:-} ]] || whole PATIENCE "$PATIENCE" 0
SEEDS=$((10#$SEEDS))  # decimal: 010 is ten
case $STUDY in
  rq1) ROWS=(popularity repeat ease bvae vae_t vae_u recvae vae_pp ehcf ngcf)
    # As the report reads UB (a DATA folder named UB): its inductive rows only (NGCF and
    # EHCF, transductive, are not run there), and EASE in its factored float32 form (31k
    # items: the dense form does not fit in 24 GB) unless EASE_FLAGS says otherwise.
    if [[ ${DATA##*/} == [Uu][Bb] ]]; then
      ROWS=(popularity repeat ease bvae vae_t vae_u recvae vae_pp)
      export EASE_FLAGS=${EASE_FLAGS-"--ease-dtype float32 --ease-factored"}
      echo "UB: the inductive rows (not ehcf, ngcf); EASE_FLAGS=\"$EASE_FLAGS\""
    fi ;;
  rq2) ROWS=(bvae no_base no_gff no_tff no_base_gff_tff mmoe cgc exchange) ;;
  rq2_weights)
    # The step-0.2 sub-grid (6 settings) first, so that an interrupted study leaves a
    # whole coarse grid; then the rest of the step-0.1 grid.
    ROWS=(bvae)
    for pass in coarse fine; do
      for p in 1 2 3 4 5 6 7 8; do
        for c in $(seq 1 $((9 - p))); do
          f=$((10 - p - c))
          coarse=$(( p % 2 == 0 && c % 2 == 0 ))
          [[ $pass == coarse && $coarse -eq 1 || $pass == fine && $coarse -eq 0 ]] || continue
          ROWS+=("weights_0.${p}_0.${c}_0.${f}")
        done
      done
    done ;;
  rq3_d) ROWS=(bvae d50 d150 d200) ;;
  rq4)
    [[ -d $DATA || ${DRY_RUN:-0} != 0 ]] || { echo "DATA '$DATA' is not a folder" >&2; exit 2; }
    # The paper's order, purchase -> click -> favourite -> cart, over the behaviors with
    # a non-empty train file (JD: no cart; UB: no click): one row per prefix, the last
    # is the full model ("bvae").
    [[ -d $DATA ]] || { echo "DATA '$DATA' is not a folder" >&2; exit 2; }
    ROWS=() modelled=""
    for pair in purchase:target click:click favorite:favourite cart:cart; do
      # (a train file of blank lines models no behavior, as in the experiment)
      grep -q '[^[:space:]]' "$DATA/${pair#*:}_train" 2> /dev/null || continue
      [[ -z $modelled ]] || ROWS+=("rq4$modelled")
      modelled+="_${pair%%:*}"
    done
    [[ ${#ROWS[@]} -gt 0 ]] || { echo "rq4 needs two behaviors with train data in $DATA" >&2; exit 2; }
    ROWS+=(bvae) ;;
  *) echo "unknown study $STUDY (rq1 rq2 rq2_weights rq3_d rq4)" >&2; exit 2 ;;
esac
problem=""
[[ -d $DATA ]] || problem="DATA '$DATA' is not a folder"
[[ ! -e $OUT || -d $OUT ]] || problem="OUT '$OUT' exists and is not a folder"
[[ ${DRY_RUN:-0} != 0 || -z $problem ]] || { echo "$problem" >&2; exit 2; }
todo=0 LEFT=()  # LEFT: the rows with a run still to do, in order
for row in "${ROWS[@]}"; do
  left=0
  for seed in $(seq 0 $((SEEDS - 1))); do
    case $row in
      popularity | repeat | ease) [[ $seed -eq 0 && ! -f "$OUT/$row.json" ]] && left=$((left + 1)) ;;
      *) [[ -f "$OUT/${row}_s$seed.json" ]] || left=$((left + 1)) ;;
    esac
  done
  todo=$((todo + left))
  (( left == 0 )) || LEFT+=("$row")
done
# Minutes per run: the median wall time (training + evaluation) of the BVAE runs already
# in OUT with the studies' budget of 150 epochs (what every study row runs: not a
# shorter smoke run, nor a baseline such as NGCF); without any, of those kept for the
# same dataset in docs/results/<DATA's folder name, lower case>; else 20 (a BVAE run on
# JD with 2 CPU cores, one run at a time).
KEPT=docs/results/$(basename -- "$DATA" | tr '[:upper:]' '[:lower:]')
per_run=$(python3 - "$OUT" "$KEPT" 2>/dev/null <<'PYEOF' || true
import argparse, json, pathlib, shlex, statistics, sys
budget = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
budget.add_argument("--epochs", type=int, default=150)  # the experiment's flag
minutes = []
folder = pathlib.Path(sys.argv[1])
if not list(folder.glob("*_s*.json")):
    folder = pathlib.Path(sys.argv[2])
for path in folder.glob("*_s*.json"):
    try:
        result = json.loads(path.read_text())
        command = shlex.split(result.get("command", ""))
        epochs = budget.parse_known_args(command)[0].epochs
        if result.get("model", "bvae") != "bvae" or epochs < 150:
            continue
        runs = result["runs"]
        minutes += [(r["train_seconds"] + r.get("eval_seconds", 0)) / 60 for r in runs]
    except (OSError, ValueError, KeyError, TypeError, SystemExit):  # argparse exits
        continue
if minutes:
    print(f"{round(statistics.median(minutes))} {len(minutes)} {folder}")
PYEOF
)
if [[ $per_run =~ ^([0-9]+)\ ([0-9]+)\ (.*)$ ]]; then
  where="OUT"
  [[ ${BASH_REMATCH[3]} == "$OUT" ]] || where=${BASH_REMATCH[3]}
  minutes=${BASH_REMATCH[1]} basis="the median of the ${BASH_REMATCH[2]} finished runs in $where"
else
  minutes=20 basis="a BVAE run on JD with 2 CPU cores; none finished in OUT yet"
fi
if [[ ${EPOCHS:-} =~ ^[0-9]+$ ]] && (( 10#$EPOCHS < 150 )); then  # a shorter budget than the runs'
  minutes=$(( (minutes * 10#$EPOCHS + 149) / 150 )) basis+="; scaled to EPOCHS=$EPOCHS of 150"
fi
once=""  # the rows without randomness run one seed
[[ $STUDY != rq1 ]] || once="popularity, repeat and EASE once; "
echo "== $STUDY: ${#ROWS[@]} rows x $SEEDS seed(s); $todo runs to do (${once}about $((todo * minutes)) minutes at ~$minutes min per run: $basis)"
if [[ ${DRY_RUN:-0} != 0 ]]; then
  [[ -z $problem ]] || echo "note: $problem; a run would stop here (this dry run lists, then exits 2)" >&2
  (( ${#LEFT[@]} == 0 )) || printf "%s\n" "${LEFT[@]}"
  # The checks a run makes before its first row (run_comparison.sh's: every row's flags
  # against DATA's files, kept results of other data in OUT), so that a dry run refuses
  # what a run would; its list of commands is not printed.
  [[ -n $problem ]] || scripts/run_comparison.sh "$DATA" "$OUT" "$SEEDS" "${ROWS[@]}" > /dev/null
  # ... and, where a run would stop on DATA or OUT, exits as it would (2).
  [[ -z $problem ]] || exit 2
  exit 0
fi
exec scripts/run_comparison.sh "$DATA" "$OUT" "$SEEDS" "${ROWS[@]}"
