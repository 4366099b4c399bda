# Whole-command wall times of `denselab predict` and `denselab train`, two code versions side by side:
# OLD and NEW are folders holding a denselab checkout's src/ (e.g. git worktrees of two commits),
# MODEL a trained model.keras. Usage: OLD=… NEW=… MODEL=… bash bench/commands.sh
set -u
PY=${PYTHON:-.venv/bin/python}
export HOME=$(mktemp -d)
OUT=$(mktemp -d)
M=$MODEL
for round in 1 2 3; do
  for side in old new; do
    src=$OLD/src; [ $side = new ] && src=$NEW/src
    s=$(date +%s.%N); PYTHONPATH=$src $PY -m denselab predict $M --index 0 --json > /dev/null 2>&1; e=$(date +%s.%N)
    echo "predict $side $(echo "$e - $s" | bc)"
    s=$(date +%s.%N); PYTHONPATH=$src $PY -m denselab train --hidden 20 --epochs 5 --seed 0 --out $OUT/t_$side --json > $OUT/t_$side.json 2>/dev/null; e=$(date +%s.%N)
    ep=$($PY -c "import json; print(round(sum(h['seconds'] for h in json.load(open('$OUT/t_$side.json'))['history']), 3))")
    echo "train $side $(echo "$e - $s" | bc) epochs $ep"
  done
done
