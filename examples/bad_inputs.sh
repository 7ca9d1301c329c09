#!/usr/bin/env bash
# Feeds sslstack the bad inputs of docs/bad-inputs.md and prints the one line each one gets.
# Offline, on a copy of a few files of examples/fsdd-mini; everything lands in $OUT (a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
SRC=examples/fsdd-mini
mkdir -p "$OUT/d/wav"
export SSLSTACK_WORKSPACE="$OUT/ws"
# 24 clips of 3 digits (8 each), from 4 speakers
files=$(cd "$SRC/wav" && for d in 0 1 2; do ls | grep "^${d}_" | awk 'NR%5==1' | head -8; done)
for f in $files; do cp "$SRC/wav/$f" "$OUT/d/wav/"; done
echo "path,label,speaker" > "$OUT/d/train.csv"
for f in $files; do echo "wav/$f,${f%%_*},$(echo "$f" | cut -d_ -f2)" >> "$OUT/d/train.csv"; done
case_() { printf '\n### %s\n$ %s\n' "$1" "${*:2}"; "${@:2}" 2>&1 | grep -E '^(error|warning|labels|done)' ; }

sslstack extract --model logmel --data "$OUT/d/train.csv" >/dev/null 2>&1

awk -F, 'NR==1{print $0",fold"; next}{print $0",1"}' "$OUT/d/train.csv" > "$OUT/d/onefold.csv"
case_ "a fold column with one fold" sslstack fit-head logreg --model logmel --data "$OUT/d/onefold.csv" --trials 0
awk -F, 'NR==1{print $0",fold"; next}{print $0","(NR==5?"":NR%3+1)}' "$OUT/d/train.csv" > "$OUT/d/emptyfold.csv"
case_ "an empty fold on a labeled row" sslstack fit-head logreg --model logmel --data "$OUT/d/emptyfold.csv" --trials 0
head -13 "$OUT/d/train.csv" > "$OUT/d/small.csv"  # classes of 8 and 4 items
case_ "classes smaller than the folds" sslstack fit-head logreg --model logmel --data "$OUT/d/small.csv" --trials 0 --folds 10
{ head -17 "$OUT/d/train.csv"; sed -n 18p "$OUT/d/train.csv"; } > "$OUT/d/single.csv"
case_ "a class with one item" sslstack fit-head logreg --model logmel --data "$OUT/d/single.csv" --trials 0
sed '1s/label/category/' "$OUT/d/train.csv" > "$OUT/d/category.csv"
case_ "no label column" sslstack extract --model logmel --data "$OUT/d/category.csv"
case_ "--label-col naming no column" sslstack extract --model logmel --data "$OUT/d/category.csv" --label-col kind
sed '1s/label/labels/' "$OUT/d/train.csv" > "$OUT/d/labels.csv"
case_ "a 'labels' column" sslstack extract --model logmel --data "$OUT/d/labels.csv"
awk -F, 'NR==1{print "id,"$0; next}{print "clip"(NR==4?2:NR)","$0}' "$OUT/d/train.csv" > "$OUT/d/dupid.csv"
case_ "a repeated id in the id column" sslstack extract --model logmel --data "$OUT/d/dupid.csv"
awk -F, 'NR==1{print "id,"$0; next}{print (NR==3?"":NR)","$0}' "$OUT/d/train.csv" > "$OUT/d/emptyid.csv"
case_ "an empty id" sslstack extract --model logmel --data "$OUT/d/emptyid.csv"
case_ "--layers beyond the store" sslstack fit-head logreg --model logmel --data "$OUT/d/train.csv" --layers 99 --trials 0
awk -F, 'NR==1{print; next}{l=$2; if (NR%3==0) l=l";x"; print $1","l","$3}' "$OUT/d/train.csv" > "$OUT/d/multi.csv"
case_ "--metric macro_f1 on a multi-label task" sslstack fit-head logreg --model logmel --data "$OUT/d/multi.csv" --metric macro_f1 --trials 0
sslstack fit-head logreg --model logmel --data "$OUT/d/train.csv" --trials 0 >/dev/null 2>&1
mkdir -p "$OUT/t/wav"
cp "$SRC/wav/3_george_0.wav" "$SRC/wav/0_george_1.wav" "$SRC/wav/1_george_2.wav" "$OUT/t/wav/"
printf 'RIFF not audio' > "$OUT/t/wav/broken.wav"
printf 'id,path,label\nt1,wav/3_george_0.wav,3\nt2,wav/0_george_1.wav,0\nt3,wav/1_george_2.wav,1\nt4,wav/broken.wav,1\n' > "$OUT/t/test.csv"
case_ "a corrupt test file" sslstack predict --data "$OUT/t/test.csv" --out "$OUT/sub.csv"
case_ "... with --on-error skip, and a test class the heads never saw" sslstack predict --data "$OUT/t/test.csv" --out "$OUT/sub.csv" --on-error skip
store=$(ls "$OUT/ws/stores" | head -1)
case_ "cache rm of a store that runs read" sslstack cache rm "$store"
case_ "cache rm of an unknown store" sslstack cache rm nope
case_ "cache export of a pooling the store lacks" sslstack cache export --model logmel --layer 0 --pool mean+max --out "$OUT/x.npz" --data "$OUT/d/train.csv"
if [ "$(id -u)" = 0 ] && mkdir -p "$OUT/ro" && mount -t tmpfs -o size=50m none "$OUT/ro" 2>/dev/null; then
  cp -r "$OUT/ws" "$OUT/ro/ws" && mount -o remount,ro "$OUT/ro"
  export SSLSTACK_WORKSPACE="$OUT/ro/ws"
  case_ "a read-only workspace: a cached extract works" sslstack extract --model logmel --data "$OUT/d/train.csv"
  case_ "... and a command that must write says where" sslstack fit-head logreg --model logmel --data "$OUT/d/labels.csv" --trials 0
  umount "$OUT/ro"
fi
echo
