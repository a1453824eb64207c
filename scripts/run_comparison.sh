#!/usr/bin/env bash
# Runs the comparison rows of docs/RESULTS.md on a released dataset with
# `python -m bvae_tf.experiment`, one JSON per row and seed; resumable: a row whose
# JSON exists is skipped (one another command wrote is named, not rerun), and a killed
# row resumes at its next epoch (the experiment keeps its state in
# OUT/<row>_s<seed>.ckpt until the JSON is written).
#
#   scripts/run_comparison.sh DATA OUT [SEEDS] [ROW...]
#   scripts/run_comparison.sh ../shared/data/bvae/JD out/comparison/jd 3
#
# Rows (default: all untuned): popularity repeat ease bvae vae_t vae_u recvae vae_pp ehcf
# ngcf mmoe cgc exchange no_base_gff_tff, on UB (a DATA folder named UB) without the
# transductive ehcf and ngcf, which docs/RESULTS.md does not run there; no_base, no_gff,
# no_tff (the single ablations);
# item_path, a BVAE variant beyond the paper, and its settings (item_path_g<G>,
# item_path_drop<P>, item_path_anneal<N>, item_path_wd<L>, item_path_cos<N> and
# combinations; bvae_anneal<N>, bvae_wd<L>, bvae_cos<N>, bvae_bm (BASE + behavior
# means), bvae_ema<R> (averaged weights), bvae_dims<D1>-<D2>-... (a latent size per
# behavior, e.g. bvae_anneal10000_dims100-200-100), any of them + _boost, bvae_boost; N a
# whole number of updates); fast (BVAE in bfloat16 with LazyAdam);
# bvae_anneal (BVAE, beta ramp searched on valid), bvae_dropout<P> / bvae_dropout (input
# dropout set / searched on valid, combinable), bvae_beta<C> / bvae_beta (beta cap set /
# searched on valid, combinable, e.g. bvae_anneal10000_beta), any bvae_<setting> row (not
# bvae_anneal) + _e<N> (at most N epochs, e.g. bvae_anneal10000_e300) and _p<N> (patience
# N, e.g. bvae_e1000_p500), both in place of the default budget (an EPOCHS or PATIENCE
# given overrides them too); the studies' rows d50 d150 d200,
# rq4_<behaviors> (e.g. rq4_purchase_click) and weights_<w1>_<w2>_<w3> (fixed loss weights in
# the data's behavior order, summing to 1, e.g. weights_0.5_0.3_0.2); and
# any "<row>_tuned" (the learning rate searched on valid over {1e-4, 1e-3, 1e-2}; EHCF's
# Adagrad rate over {0.01, 0.05, 0.1}) and "<row>_own" (the method's own regulariser
# searched on valid: ngcf_own NGCF's L2 weight, recvae_own RecVAE's gamma, ehcf_own
# EHCF's dropout, bvae_own / vae_t_own / vae_u_own / vae_pp_own the input dropout), 3
# trials each. A searched row (any row with a --grid) searches at seed 0 only; its seeds
# 1, 2, ... train seed 0's choice (per behavior for one-per-target models; the
# experiment's --selected-from OUT/<row>_s0.json), so they need seed 0's file; a
# _tuned or _own row's choice that is the untuned row's setting, where that row's seed-0
# run repeats the chosen trial exactly, takes the untuned row's run of the seed
# (--reuse-from OUT/<row>_s0.json OUT/<row>_s<seed>.json) instead of training it again.
# DRY_RUN=1 lists the commands of the runs not done yet instead of running them.
# Neural rows use the settings of every BVAE run in docs/RESULTS.md (at most 150 epochs,
# patience 40, test also scored per epoch for the paper protocol); RecVAE (50 epochs,
# patience 10), NGCF (60, 10) and EHCF (300, 40) their own. Seeds run outer, so
# every row has seed 0 before any has seed 1. EASE_FLAGS passes extra EASE flags; on UB
# it defaults to "--ease-dtype float32 --ease-factored" (31k items: the dense form does
# not fit in 24 GB; no B_b formed) unless set, even empty.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
if (( $# < 2 )); then
  echo "usage: scripts/run_comparison.sh DATA OUT [SEEDS] [ROW...] (--help lists the rows)" >&2
  exit 2
fi
DATA=$1 OUT=$2
GIVEN_DATA=$1 GIVEN_OUT=$2  # as typed, for the messages
SEEDS=${3:-3}
# DATA and OUT are read from the caller's folder and passed on relative to the
# repository root, where the runs start (the result files record those paths).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(realpath -s -m --relative-to="$ROOT" -- "$DATA")
OUT=$(realpath -s -m --relative-to="$ROOT" -- "$OUT")
cd "$ROOT"
whole() {  # NAME VALUE LOW: VALUE must be a whole number >= LOW (decimal: 010 is ten),
  # of at most 9 digits (the experiment takes counts below 2**31)
  [[ $2 =~ ^[0-9]{1,9}$ ]] && (( 10#$2 >= $3 )) \
    || { echo "$1 must be a whole number >= $3 of at most 9 digits, got '$2'" >&2; exit 2; }
}
whole SEEDS "$SEEDS" 1
SEEDS=$((10#$SEEDS))
whole EPOCHS "${EPOCHS:-150}" 1
whole PATIENCE "${PATIENCE:-40}" 0
shift $(( $# < 3 ? $# : 3 ))
ROWS=("$@")
# Row names are words, never file patterns: "rq4_*" must not expand to the folder's files.
set -f
for row in "${ROWS[@]}"; do
  [[ $row =~ ^[A-Za-z0-9_.-]+$ ]] \
    || { echo "unknown row '$row' (rows are letters, digits, '_', '.' and '-')" >&2; exit 2; }
done
is_ub=0  # as the report and run_studies.sh read UB: by the folder's name
[[ ${DATA##*/} != [Uu][Bb] ]] || is_ub=1
if [[ ${#ROWS[@]} -eq 0 ]]; then
  for row in popularity repeat ease bvae vae_t vae_u recvae vae_pp ehcf ngcf mmoe cgc exchange \
    no_base_gff_tff; do
    (( is_ub )) && [[ $row == ehcf || $row == ngcf ]] || ROWS+=("$row")
  done
  (( ! is_ub )) || echo "UB: the default rows without the transductive ehcf and ngcf"
fi
if (( is_ub )) && [[ -z ${EASE_FLAGS+set} ]] && [[ " ${ROWS[*]} " == *" ease "* ]]; then
  EASE_FLAGS="--ease-dtype float32 --ease-factored"
  echo "UB: EASE_FLAGS=\"$EASE_FLAGS\" (set EASE_FLAGS, even empty, for other EASE flags)"
fi
PY=${PY:-.venv/bin/python}
# The cross-behavior boosts tried on valid by the "..._boost" rows (0 is always tried):
# a decoder's logits spread over about 10, so 1000 puts touched items first.
BOOST_GRID=${BOOST_GRID:-0.25,0.5,1,2,4,8,16,1000}
# The input dropout rates a "..._dropout" row tries on valid (BVAE's default is 0.5).
DROPOUT_GRID=${DROPOUT_GRID:-0.2,0.5,0.7}
# The beta caps a "beta" row part searches (the maximum KL weight; BVAE's default 0.2).
BETA_GRID=${BETA_GRID:-0.05,0.2,0.5}
# The training budget of every run in docs/RESULTS.md; EPOCHS / PATIENCE override it
# (e.g. EPOCHS=1 for a smoke run into a scratch OUT).
TRAIN=(--epochs "${EPOCHS:-150}" --patience "${PATIENCE:-40}" --paper-protocol)

# A row "<row>_tuned" is <row> with its learning rate searched on valid (--grid): the
# BVAE paper's {1e-4, 1e-3, 1e-2} for every neural row except EHCF, whose Adagrad
# rate is searched over {0.01, 0.05, 0.1} (its code's 0.05 in the middle); 3 trials for
# every row.
# A row's numeric part: a plain decimal number (e.g. 0.99, 1e-3 is not one).
number() { [[ $2 =~ ^[0-9]{1,9}(\.[0-9]+)?$ ]] || { echo "unknown row $1 ('$2' is not a number)" >&2; exit 2; }; }
positive() { [[ $2 =~ [1-9] ]] || { echo "unknown row $1 ('$2' must be > 0)" >&2; exit 2; }; }
# ... a whole number (e.g. updates), and a rate in [0, 1).
count() { [[ $2 =~ ^[0-9]{1,9}$ ]] || { echo "unknown row $1 ('$2' is not a whole number)" >&2; exit 2; }; }
rate() { [[ $2 =~ ^0(\.[0-9]+)?$ ]] || { echo "unknown row $1 ('$2' must be in [0, 1))" >&2; exit 2; }; }
flags() {
  local base
  [[ $1 != *__* && $1 != *_ && $1 != _* ]] || { echo "unknown row $1 (an empty part)" >&2; exit 2; }
  case $1 in
    popularity_tuned | repeat_tuned | ease_tuned)
      echo "unknown row $1 (${1%_tuned} has no learning rate; ease searches its own grid)" >&2
      exit 2 ;;
    ehcf_tuned) base=$(flags ehcf) || exit 2; echo "$base --grid lr=0.01,0.05,0.1" ; return ;;
    # "<row>_own": the method's own regularisation searched on valid at its default
    # learning rate, 3 trials (the budget of "_tuned"): NGCF's L2 weight (the low end
    # of its paper's grid 1e-5 ... 1e-1), RecVAE's gamma (around its paper's 0.005),
    # EHCF's dropout (around its code's 0.5) and the VAEs' input dropout (Mult-VAE's
    # regulariser, around 0.5).
    ngcf_own) base=$(flags ngcf) || exit 2; echo "$base --grid ngcf_l2=1e-5,1e-4,1e-3"; return ;;
    recvae_own) base=$(flags recvae) || exit 2
      echo "$base --grid recvae_gamma=0.0035,0.005,0.01"; return ;;
    ehcf_own) base=$(flags ehcf) || exit 2; echo "$base --grid ehcf_dropout=0.3,0.5,0.7"; return ;;
    bvae_own | vae_t_own | vae_u_own | vae_pp_own) base=$(flags "${1%_own}") || exit 2
      echo "$base --grid dropout=0.2,0.5,0.7"; return ;;
    *_own) echo "unknown row $1 (_own rows: ngcf recvae ehcf bvae vae_t vae_u vae_pp)" >&2
      exit 2 ;;
    *_tuned_tuned) echo "unknown row $1 (_tuned once)" >&2; exit 2 ;;
    # (a row's own fixed rate, e.g. NGCF's, gives way to the search)
    *_tuned) base=$(flags "${1%_tuned}") || exit 2
      base=$(sed -E 's/ --lr [^ ]+//' <<< "$base"); echo "$base --grid lr=1e-4,1e-3,1e-2" ; return ;;
  esac
  case $1 in
    popularity | repeat) echo "--model $1" ;;
    ease) echo "--model ease ${EASE_FLAGS:-}" ;;
    bvae | vae_t | vae_u) echo "--model $1" ;;
    # RecVAE's own schedule (its paper and code): at most 50 RecVAE epochs, each
    # 3 encoder passes and 1 decoder pass; patience 10.
    recvae) echo "--model recvae --epochs 50 --patience 10" ;;
    # VAE++: BVAE's settings (the BVAE paper: "consistent with VAE").
    vae_pp) echo "--model vae_pp" ;;
    # EHCF: its code's batch (256) and Adagrad rate (0.05); at most 300 epochs (its code
    # runs 500), patience 40.
    ehcf) echo "--model ehcf --batch-size 256 --epochs 300 --patience 40" ;;
    # NGCF: batch 1024 and rate 1e-3 from its paper's grid {1e-4, 5e-4, 1e-3, 5e-3};
    # at most 60 epochs, patience 10 (a JD click epoch: about 45 s alone on 2 cores,
    # 55-120 s beside another run; NGCF took 83 minutes per seed on JD).
    ngcf) echo "--model ngcf --batch-size 1024 --lr 1e-3 --epochs 60 --patience 10" ;;
    mmoe | cgc | exchange) echo "--model bvae --encoder $1" ;;
    no_base | no_gff | no_tff) echo "--model bvae --ablation $1" ;;
    no_base_gff_tff) echo "--model bvae --ablation no_base no_gff no_tff" ;;
    # Beyond the paper: BVAE with the item-level path from the other behaviors.
    item_path) echo "--model bvae --item-path" ;;
    # ... "item_path_g<G>": its per-pair weights scaled by G, i.e. their effective Adam
    # rate G times the shared one; "item_path_drop<P>": the train split's cross-behavior
    # overlaps hidden from the path with probability P in training;
    # "item_path_anneal<N>": a beta ramp of N updates (the default 200000 leaves the KL
    # term near 0); "item_path_wd<L>": decoupled weight decay L (AdamW);
    # "item_path_cos<N>": the learning rate's cosine decay over N updates; the parts
    # combine, e.g. "item_path_g100_anneal1000". "bvae_anneal<N>", "bvae_wd<L>",
    # "bvae_cos<N>" and their combinations: plain BVAE with those settings; "dims<D1>-<D2>-...":
    # per-behavior latent sizes in the data's behavior order (--latent-dims; d = the largest),
    # e.g. "bvae_anneal10000_dims100-200-100"; "bm": BASE +
    # behavior means (--behavior-mean, e.g. "bvae_bm"); "ema<R>": the weights averaged
    # with decay R per update (--weight-average, e.g. "bvae_ema0.99"); "dropout<P>": input
    # dropout P (--dropout; BVAE's default 0.5), "dropout" alone: P searched on valid over
    # DROPOUT_GRID (e.g. "bvae_anneal10000_dropout"); "beta<C>": beta cap C (--beta-cap),
    # "beta" alone: the cap searched on valid over BETA_GRID (e.g. "bvae_anneal10000_beta");
    # "e<N>": at most N epochs for this row (in place of the default 150; an EPOCHS given
    # still wins, e.g. EPOCHS=1 for a smoke run; "bvae_anneal10000_e300"); "p<N>": early
    # stopping after N epochs without a better valid sum (in place of the default 40; a
    # PATIENCE given wins; "bvae_e1000_p500", the released code's 1000 and 500).
    # A last part "boost" (e.g.
    # "bvae_boost", "item_path_g100_boost") adds the cross-behavior boost, chosen per
    # behavior on valid after training among 0 and BOOST_GRID.
    item_path_* | bvae_anneal[0-9]* | bvae_wd* | bvae_cos[0-9]* | bvae_bm* | bvae_ema* | bvae_dims* \
      | bvae_dropout* | bvae_beta* | bvae_e[0-9]* | bvae_p[0-9]* | bvae_boost)
      local out="--model bvae" part kind kinds=" "
      [[ $1 == bvae_* ]] || out+=" --item-path"
      local rest=${1#item_path_}
      for part in $(tr _ ' ' <<< "${rest#bvae_}"); do
        # One part of each kind ("beta" and "beta0.2" are one kind); "boost" last.
        kind=${part%%[0-9]*}
        [[ $kinds != *" $kind "* ]] || { echo "unknown row $1 ('$kind' twice)" >&2; exit 2; }
        [[ $kinds != *" boost "* ]] || { echo "unknown row $1 (boost is the last part)" >&2; exit 2; }
        kinds+="$kind "
        case $part in
          g[0-9]*) [[ $1 == item_path_* ]] || { echo "unknown row $1" >&2; exit 2; }
            number "$1" "${part#g}"; positive "$1" "${part#g}"
            out+=" --item-path-scale ${part#g}" ;;
          drop[0-9]*) [[ $1 == item_path_* ]] || { echo "unknown row $1" >&2; exit 2; }
            rate "$1" "${part#drop}"; out+=" --item-path-drop-overlap ${part#drop}" ;;
          anneal[0-9]*) count "$1" "${part#anneal}"; out+=" --anneal-steps $((10#${part#anneal}))" ;;
          wd[0-9]*) number "$1" "${part#wd}"; out+=" --weight-decay ${part#wd}" ;;
          ema[0-9]*) [[ ${part#ema} =~ ^0(\.[0-9]+)?$ ]] \
              || { echo "unknown row $1 (ema<R> needs 0 <= R < 1)" >&2; exit 2; }
            out+=" --weight-average ${part#ema}" ;;
          cos[0-9]*) count "$1" "${part#cos}"; out+=" --lr-decay-steps $((10#${part#cos}))" ;;
          bm) out+=" --behavior-mean" ;;
          dropout) out+=" --grid dropout=$DROPOUT_GRID" ;;
          beta) out+=" --grid beta_cap=$BETA_GRID" ;;
          beta[0-9]*) number "$1" "${part#beta}"; out+=" --beta-cap ${part#beta}" ;;
          e[0-9]*) [[ ${part#e} =~ ^[0-9]{1,9}$ ]] && (( 10#${part#e} >= 1 )) \
              || { echo "unknown row $1 (e<N>: N a whole number of epochs >= 1)" >&2; exit 2; }
            out+=" --epochs $((10#${part#e}))" ;;
          p[0-9]*) [[ ${part#p} =~ ^[0-9]{1,9}$ ]] \
              || { echo "unknown row $1 (p<N>: N a whole number of epochs)" >&2; exit 2; }
            out+=" --patience $((10#${part#p}))" ;;
          dropout[0-9]*) rate "$1" "${part#dropout}"; out+=" --dropout ${part#dropout}" ;;
          dims[0-9]*) [[ ${part#dims} =~ ^[1-9][0-9]*(-[1-9][0-9]*)+$ ]] \
              || { echo "unknown row $1 (dims<D1>-<D2>-...: one latent size per behavior)" >&2; exit 2; }
            part=${part#dims}; out+=" --latent-dims ${part//-/ }" ;;
          boost) out+=" --boost-grid $BOOST_GRID" ;;
          *) echo "unknown row $1" >&2; exit 2 ;;
        esac
      done
      echo "$out" ;;
    # Large-catalog path: sampled softmax over the batch's targets and 2000 uniform
    # negatives per decoder and step (about 15% of JD's items); evaluation is full.
    sampled) echo "--model bvae --sampled-softmax 2000" ;;
    # The same with the negatives drawn by train popularity (logQ-corrected).
    sampled_pop) echo "--model bvae --sampled-softmax 2000 --sampled-proposal popularity" ;;
    # The fast training configuration (docs/RESULTS.md, "Speed"): bfloat16 decoder
    # products and softmax (precision mixed_bfloat16), LazyAdam on the encoders' tables.
    fast) echo "--model bvae --precision mixed_bfloat16 --sparse-updates" ;;
    # BVAE with the length of its beta ramp searched on valid: 1000 and 3000 updates
    # reach beta_cap within 150 JD epochs (22 updates each), 10000 reaches a third of
    # it, the default 200000 stays near 0.
    bvae_anneal) echo "--model bvae --grid anneal_steps=1000,3000,10000,200000" ;;
    # RQ3: latent size d (BVAE's default is 100).
    d50 | d150 | d200) echo "--model bvae --latent-dim ${1#d}" ;;
    # RQ4: behaviors added one at a time, "rq4_<b1>_<b2>..." models those behaviors
    # (JD: rq4_purchase, rq4_purchase_click; UB: rq4_purchase, rq4_purchase_favorite;
    # the full set is the "bvae" row).
    rq4_*)
      local seen=" "
      [[ -n ${1#rq4_} ]] || { echo "unknown row $1 (no behavior)" >&2; exit 2; }
      for b in $(tr _ ' ' <<< "${1#rq4_}"); do
        [[ $b =~ ^(purchase|click|favorite|cart)$ ]] \
          || { echo "unknown row $1 ('$b' is none of purchase, click, favorite, cart)" >&2; exit 2; }
        [[ $seen != *" $b "* ]] || { echo "unknown row $1 ('$b' twice)" >&2; exit 2; }
        seen+="$b "
      done
      echo "--model bvae --behaviors $(tr _ ' ' <<< "${1#rq4_}")" ;;
    # RQ2: fixed loss weights in place of SDWL, "weights_<w1>_<w2>_<w3>": one per modelled
    # behavior in the data's order (JD: purchase, click, favourite; UB, whose click is
    # not modelled: purchase, favourite, cart), each > 0, summing to 1 (the paper's grid).
    weights_*) IFS=_ read -r -a w <<< "${1#weights_}"
      [[ ${#w[@]} -eq 3 ]] \
        || { echo "unknown row $1 (weights_<w1>_<w2>_<w3>: 3 weights)" >&2; exit 2; }
      for v in "${w[@]}"; do number "$1" "$v"; positive "$1" "$v"; done
      awk -v a="${w[0]}" -v b="${w[1]}" -v c="${w[2]}" 'BEGIN { d = a + b + c - 1; exit !(d * d < 1e-12) }' \
        || { echo "unknown row $1 (the weights sum to 1)" >&2; exit 2; }
      echo "--model bvae --loss-weights ${w[*]}" ;;
    *) echo "unknown row $1 (the rows: scripts/run_comparison.sh --help)" >&2; exit 2 ;;
  esac
}

# opts_for ROW SEED: sets NAME and OPTS, the run's --name and the flags after it. EPOCHS
# and PATIENCE, when set, also replace a row's own budget (e.g. EHCF's 300 epochs).
opts_for() {
  local -a args
  read -r -a args <<< "$(flags "$1")"
  case $1 in
    popularity | repeat | ease) NAME=$1; OPTS=("${args[@]}"); return ;;  # deterministic: one run
  esac
  NAME="${1}_s$2"
  OPTS=(--seeds 1 --first-seed "$2" "${TRAIN[@]}" "${args[@]}")
  [[ -z ${EPOCHS:-} || " ${args[*]} " != *" --epochs "* ]] || OPTS+=(--epochs "$((10#$EPOCHS))")
  [[ -z ${PATIENCE:-} || " ${args[*]} " != *" --patience "* ]] || OPTS+=(--patience "$((10#$PATIENCE))")
  # A searched row's later seeds train the choice of its seed-0 search. For a "<row>_tuned"
  # or "<row>_own" row, a choice that is what the untuned <row> trained (its seed-0 run
  # repeats the chosen trial bit for bit) is taken from <row>'s file of this seed instead
  # of trained again (the experiment's --reuse-from checks it; REUSE is left out of the
  # command a kept result is matched on).
  REUSE=()
  if (( $2 > 0 )) && [[ " ${args[*]} " == *" --grid "* ]]; then
    OPTS+=(--selected-from "$OUT/${1}_s0.json")
    case $1 in
      *_tuned | *_own)
        local base=${1%_*}
        if (flags "$base") > /dev/null 2>&1; then
          REUSE=(--reuse-from "$OUT/${base}_s0.json" "$OUT/${base}_s$2.json")
        fi ;;
    esac
  fi
}

# Every row name and value is checked before anything runs: flags exits on an unknown
# row, then the experiment checks every row's flags in one process (--check: what does
# not depend on the data). Values that depend on the data (e.g. rq4_cart on JD, whose
# cart has no train events) are checked by the experiment at the row's turn.
# Every seed's command is checked, so that a kept result of any seed that the run
# would refuse (e.g. a truncated file) stops the list now, not after the seeds before it.
declare -A listed=()
checks=""
checked=()  # the row of each checked command, for the messages
for row in "${ROWS[@]}"; do
  [[ -z ${listed[$row]:-} ]] || { echo "row $row is given twice" >&2; exit 2; }
  listed[$row]=1
  flags "$row" > /dev/null
  for seed in $(seq 0 $((SEEDS - 1))); do
    case $row in popularity | repeat | ease) [[ $seed -eq 0 ]] || continue ;; esac
    opts_for "$row" "$seed"
    checks+="$(printf '%q ' --data "$DATA" --out "$OUT" --name "$NAME" "${OPTS[@]}")"$'\n'
    checked+=("$row")
  done
done
# (PY=echo, as the tests use, prints commands instead of running them: nothing to check.)
if ! refused=$(TF_CPP_MIN_LOG_LEVEL=3 "$PY" -c 'import sys; from bvae_tf.experiment import check_commands
sys.exit(check_commands(sys.stdin))' <<< "$checks" 2>&1 > /dev/null); then
  mapped=0
  declare -A said=()  # a row's flag error is the same at every seed: said once
  while IFS= read -r line; do
    if [[ $line =~ ^command\ ([0-9]+):\ (.*)$ ]]; then
      line="row ${checked[BASH_REMATCH[1] - 1]}: ${BASH_REMATCH[2]}"; mapped=1
      [[ -n ${said[$line]:-} ]] || echo "$line" >&2
      said[$line]=1
    fi
  done <<< "$refused"
  [[ $mapped -eq 1 ]] || echo "$refused" >&2
  exit 2
fi
problem=""
[[ -d $DATA ]] || problem="DATA '$GIVEN_DATA' is not a folder"
[[ ! -e $OUT || -d $OUT ]] || problem="OUT '$GIVEN_OUT' exists and is not a folder"
if [[ -n $problem ]]; then
  [[ ${DRY_RUN:-0} != 0 ]] || { echo "$problem" >&2; exit 2; }
  echo "note: $problem; a run would stop here (this dry run lists, then exits 2)" >&2
fi
# (the commands name DATA and OUT relative to the repository root, where they run)
[[ ${DRY_RUN:-0} == 0 ]] || echo "(commands run from $ROOT)"
# DRY_RUN=1 prints each command that would run (rows and seeds not done yet) instead.
run() { if [[ ${DRY_RUN:-0} != 0 ]]; then printf 'would run:'; printf ' %q' "$@"; echo; else "$@"; fi; }
[[ ${DRY_RUN:-0} != 0 ]] || mkdir -p "$OUT"
# A row's JSON that exists counts as done only if this script's command for the row
# wrote it (the experiment records its command line); one written by another command
# (e.g. a shorter smoke run with other EPOCHS) is named and left alone, not rerun:
# delete it, or run the experiment with --overwrite, to replace it.
# A result of other data in OUT stops the list: it would otherwise count as done. The
# data is compared by content (the SHA-256 digest of DATA's files the experiment
# records) where the file has a digest, else by the --data folder it names.
others=()
digest=""  # DATA's, computed at the first kept file that records one
data_digest() {
  [[ -z $digest && -d $DATA ]] || return 0
  digest=$("$PY" -c 'import sys; from bvae_tf.experiment import data_digest
print(data_digest(sys.argv[1]))' "$DATA" 2>/dev/null) || digest=""
  [[ $digest =~ ^[0-9a-f]{64}$ ]] || digest="unknown"  # (PY=echo in the tests)
}
# done_by_this NAME FLAG...: 0 if OUT/NAME.json exists, holds finished runs, and records
# a command that ends in "--name NAME FLAG..." (DATA and OUT may be spelled differently,
# e.g. from another folder, and still be the same files); exits 2 if it was trained on
# other data than DATA's (see above).
done_by_this() {
  local file="$OUT/$1.json" recorded
  [[ -f $file ]] || return 1
  # An unreadable file (e.g. truncated) is not done: the experiment then names it and
  # stops; nor is one without runs (the experiment resumes it, or refuses another
  # command's). Prints the recorded --data folder (resolved from the repository root,
  # where the runs start) and its data digest, then the command.
  recorded=$(python3 -c 'import json, os, sys
r = json.load(open(sys.argv[1]))
assert isinstance(r, dict) and isinstance(r.get("runs"), list) and r["runs"]
data = r.get("data")
print(os.path.realpath(data) if isinstance(data, str) else "")
print(r.get("data_digest") or "")
print(r.get("command", ""))' "$file" 2>/dev/null) || return 1
  local data=${recorded%%$'\n'*} rest=${recorded#*$'\n'}
  local kept=${rest%%$'\n'*} command=${rest#*$'\n'}
  command=${command%% --reuse-from *}  # (last in the command; see opts_for)
  # --selected-from (last but --reuse-from) names a file in OUT, spelled as OUT was
  # then: left out here too; the experiment checks the choice a kept seed trained.
  command=${command%% --selected-from *}
  [[ -z $kept ]] || data_digest
  if [[ -n $kept && -n $digest && $digest != unknown ]]; then
    if [[ $kept != "$digest" ]]; then
      echo "$file holds a result trained on other data (its files' digest differs from" \
        "those of $DATA): use another OUT, or move it away" >&2
      exit 2
    fi
  elif [[ -n $data && $data != "$(realpath -m -- "$DATA")" ]]; then
    if [[ -e $data ]]; then
      echo "$file holds a result trained on other data (its --data resolves to $data," \
        "not $(realpath -m -- "$DATA"); the file records no data digest to compare):" \
        "use another OUT, or move it away" >&2
    else
      echo "$file records no data digest, and its --data (resolved from the repository" \
        "root: $data) does not exist here, so its data cannot be compared with DATA:" \
        "run from a checkout beside that folder, or move the file away" >&2
    fi
    exit 2
  fi
  local want="$*"
  [[ $command == *" --name ${want%% --selected-from *}" ]] || others+=("$file")
  return 0
}
for seed in $(seq 0 $((SEEDS - 1))); do
  for row in "${ROWS[@]}"; do
    case $row in popularity | repeat | ease) [[ $seed -eq 0 ]] || continue ;; esac
    opts_for "$row" "$seed"
    ! done_by_this "$NAME" "${OPTS[@]}" || continue
    echo "== $NAME"
    run "$PY" -m bvae_tf.experiment --data "$DATA" --out "$OUT" --name "$NAME" "${OPTS[@]}" \
      "${REUSE[@]}"
  done
done
if [[ ${#others[@]} -gt 0 ]]; then
  echo "note: ${#others[@]} result(s) in OUT were written by another command (other" \
    "settings or budget) and were not rerun; delete them to run these rows: ${others[*]}" >&2
fi
if [[ ${DRY_RUN:-0} != 0 ]]; then echo "== dry run: nothing was run"; else echo "== done: $GIVEN_OUT"; fi
# A dry run refuses what a run would (exit 2), after listing what it would run.
[[ -z $problem ]] || { echo "$problem: a run stops here" >&2; exit 2; }
