#!/usr/bin/env bash
# The image demo, offline, on two datasets that ship inside scikit-image and scikit-learn:
# lfw_subset (200 greyscale 25x25 crops: faces vs non-faces) and digits (1797 8x8 digits),
# written out as PNG files (80 % train in 5 stratified folds, 20 % held-out test).
# For each: extract (raw pixels, EfficientNet-Lite0, MobileNetV2) -> probe -> fit-head -> stack
# -> predict -> report. Everything lands in demo-images-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-demo-images-out}"
rm -rf "$OUT"
mkdir -p "$OUT"
export OMP_NUM_THREADS="${DEMO_THREADS:-2}" MKL_NUM_THREADS="${DEMO_THREADS:-2}"
export OPENBLAS_NUM_THREADS="${DEMO_THREADS:-2}"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

run() {  # dataset, extra flags of the binary task, extract flags of the CNNs
  local name="$1" task="$2" views="$3" data="$OUT/$1"
  export SSLSTACK_WORKSPACE="$data/ws"
  step python examples/make_image_data.py "$name" "$data"
  # the baseline: the 32x32 centre view's pixels, through the same store, folds and heads
  step sslstack extract --model pixels --data "$data/train.csv" --pool mean
  # ImageNet CNNs whose weights ship inside pip packages (sslstack[images]): every stage a layer
  step sslstack extract --model efficientnet-lite0 --data "$data/train.csv" --pool mean,max $views
  step sslstack extract --model mobilenet-v2 --data "$data/train.csv" --pool mean,max $views
  step sslstack probe --model efficientnet-lite0 --metric accuracy $task
  step sslstack fit-head logreg --model pixels --trials 8 --metric accuracy $task
  step sslstack fit-head logreg --model efficientnet-lite0 --trials 12 --metric accuracy $task
  step sslstack fit-head logreg --model mobilenet-v2 --trials 12 --metric accuracy $task
  step sslstack runs ls
  step sslstack stack
  step sslstack predict --data "$data/test.csv" --out "$data/submission.csv"
  step sslstack report --out "$data/report.html" --data "$data/train.csv"
}

run lfw "--positive face" "--tta flip"  # a face mirrored is a face: two views, mean and max
run digits "" ""                        # a mirrored digit is not a digit: the centre view only
printf '\nreports: %s %s\n' "$OUT/lfw/report.html" "$OUT/digits/report.html"
