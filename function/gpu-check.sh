#!/usr/bin/env bash
# GPU check, in two halves because the GPU machine has no Rust toolchain and no network:
#
#   function/gpu-check.sh bundle   # here: build with --features cuda, pack binaries, model and
#                                  # audio into .gpu/ (split in two so each transfer stays small)
#   function/gpu-check.sh stash    # on the GPU machine, call 1: keep the first model half in /root
#   function/gpu-check.sh run      # on the GPU machine, call 2: nvidia-smi, token parity on CUDA
#                                  # (greedy and beam 5), exec -> first transcript with an empty
#                                  # and a warm kernel cache, warmed-up real-time factors for
#                                  # greedy, beam 5 and batched; prints a table
#   function/gpu-check.sh probe    # on the GPU machine, call 2 instead of run: first vs warm
#                                  # request timings in one process, CUDA and CPU
#
# The device tool carries `.gpu/part1` for `stash` and `.gpu/part2` for `run` (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
STASH=${TINGXIE_STASH:-$HOME/tingxie-stash}
MODEL=${MODEL:-models/whisper-tiny-en}
FIXTURES=${TINGXIE_FIXTURES:-../shared/fixtures}
FILES="s01.wav s02.wav s03.wav s04.wav s05.wav s06.wav s07.wav s08.wav s09.wav s10.wav s11.wav s12.wav
s13.wav s14.wav s15.wav s16.wav s17.wav s18.wav s19.wav s20.wav s21.wav s22.wav s23.wav s24.wav
long_90s.wav silence_10s.wav tone_noise_5s.wav"

bundle() {
  cargo build --release --workspace --bins
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  rm -rf "$GPU_DIR" && mkdir -p "$GPU_DIR/part1" "$GPU_DIR/part2/model" "$GPU_DIR/part2/fixtures/speech"
  split -n 2 -d "$MODEL/model.bin" "$GPU_DIR/model.bin."
  mv "$GPU_DIR/model.bin.00" "$GPU_DIR/part1/"
  mv "$GPU_DIR/model.bin.01" "$GPU_DIR/part2/"
  [ ! -e "$GPU_DIR/model.bin.02" ] || { echo "model too large for two parts" >&2; exit 1; }
  cp "$MODEL"/{config.json,tokenizer.json,vocabulary.txt} "$GPU_DIR/part2/model/"
  mkdir -p "$GPU_DIR/part2/silero-vad" && cp models/silero-vad/silero_vad_16k.safetensors "$GPU_DIR/part2/silero-vad/"
  sha256sum "$MODEL/model.bin" | cut -d' ' -f1 > "$GPU_DIR/part2/model.bin.sha256"
  for bin in tingxie tingxie-bench; do
    strip -o "$GPU_DIR/$bin" "$target_dir/release/$bin"
    xz -T2 -6 -c "$GPU_DIR/$bin" > "$GPU_DIR/part2/$bin.xz" && rm "$GPU_DIR/$bin"
  done
  cp "$FIXTURES"/speech/{manifest.tsv,faster-whisper-segments.json,faster-whisper-segments-beam5.json} "$GPU_DIR/part2/fixtures/speech/"
  for f in $FILES; do cp "$FIXTURES/speech/$f" "$GPU_DIR/part2/fixtures/speech/"; done
  du -sh "$GPU_DIR"/part1 "$GPU_DIR"/part2
}

stash() {
  mkdir -p "$STASH" && cp "$GPU_DIR"/part1/model.bin.00 "$STASH/"
  ls -la "$STASH"
  nvidia-smi --query-gpu=name,driver_version --format=csv; command -v nvcc || true
}

# Unpacks the model and binaries and finds the CUDA libraries; sets $work and $p2.
prepare() {
  work=/tmp/tingxie-gpu p2="$GPU_DIR/part2"
  mkdir -p "$work/model"
  cat "$STASH/model.bin.00" "$p2/model.bin.01" > "$work/model/model.bin"
  echo "$(cat "$p2/model.bin.sha256")  $work/model/model.bin" | sha256sum -c -
  cp "$p2"/model/* "$work/model/"
  for bin in tingxie tingxie-bench; do
    python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$p2/$bin.xz" > "$work/$bin"
    chmod +x "$work/$bin"
  done
  # NVRTC compiles the kernels at run time; find the library wherever the image keeps it.
  nvrtc=$(find / -xdev -name 'libnvrtc.so*' 2>/dev/null | grep -v stub | head -1 || true)
  [ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
  echo "nvrtc: ${nvrtc:-not found}"
  # NVRTC needs the CUDA headers; cubecl looks in $CUDA_PATH/include (default /usr/local/cuda).
  nvcc_path=$(command -v nvcc || true)
  [ -n "$nvcc_path" ] && export CUDA_PATH="${CUDA_PATH:-$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")}"
  echo "CUDA_PATH: ${CUDA_PATH:-unset}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
}

# Per-file timings in one process: the same short file three times shows what the first request
# pays (kernel compilation) and what a warm one costs.
probe() {
  prepare
  local s="$p2/fixtures/speech"
  for device in cuda cpu; do
    echo "== $device"
    timeout 150 "$work/tingxie" transcribe --model "$work/model" --device "$device" --threads 16 --timings \
      --beam-size 1 --temperature 0 --format text "$s/s01.wav" "$s/s01.wav" "$s/s01.wav" "$s/s02.wav" || echo "($device stopped)"
  done
}

# Seconds from exec to the end of one process running `tingxie transcribe ARGS`.
process_seconds() {
  local start=$(date +%s.%N)
  if timeout 300 "$work/tingxie" transcribe --model "$work/model" --device cuda --timings --format text "$@" \
    > /dev/null 2>> "$work/timings.jsonl"; then
    python3 -c "print(round($(date +%s.%N) - $start, 2))"
  else
    echo "stopped after 300 s"
  fi
}

run() {
  prepare
  local bench="$work/tingxie-bench --model $work/model --fixtures $p2/fixtures" s="$p2/fixtures/speech"
  export TINGXIE_KERNEL_CACHE_DIR="$work/kernels"
  rm -rf "$TINGXIE_KERNEL_CACHE_DIR" "$work/timings.jsonl"
  echo "== exec -> first transcript of s04.wav (4.8 s), greedy"
  echo "| kernel cache | seconds |"; echo "|---|---|"
  echo "| empty | $(process_seconds --beam-size 1 "$s/s04.wav") |"
  echo "| warm | $(process_seconds --beam-size 1 "$s/s04.wav") |"
  echo "== parity, greedy, cuda"; timeout 240 $bench parity --device cuda --mode greedy $FILES || true
  echo "== parity, beam 5, cuda"; timeout 240 $bench parity --device cuda --mode beam5 ${FILES/tone_noise_5s.wav/} || true
  echo "== warmed-up real-time factor, long_90s.wav (per-file lines: kernels_compiled should be 0)"
  for mode in "--beam-size 1" "--beam-size 5" "--beam-size 1 --batch-size 8" "--beam-size 1 --vad-filter"; do
    echo "-- $mode"
    timeout 240 "$work/tingxie" transcribe --model "$work/model" --vad-model "$p2/silero-vad" --device cuda --warm-up --timings $mode \
      --format text "$s/long_90s.wav" "$s/long_90s.wav" 2>&1 >/dev/null | grep -E 'real_time_factor|warm_up' || echo "(stopped)"
  done
  cat "$work/timings.jsonl" | grep -E 'file|warm' || true
}

"${1:?usage: gpu-check.sh bundle|stash|run|probe}"
