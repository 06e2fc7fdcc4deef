#!/usr/bin/env python3
"""The benchmark peer: faster-whisper 1.2.1 transcribing the same files with the same settings.

usage: faster_whisper_peer.py MODEL_DIR THREADS BEAM_SIZE [--batch-size N] [--vad-filter] FILE...
       faster_whisper_peer.py --vad-only REPS FILE
Prints one transcript per line; on stderr a JSON line with the model-load and transcription
seconds. BEAM_SIZE 1 means greedy at temperature 0 only (the reference's `greedy` mode);
otherwise faster-whisper's defaults with that beam size. With --batch-size, files go through
faster-whisper's BatchedInferencePipeline (its VAD cuts the windows), N windows at a time;
with --vad-filter, `transcribe(vad_filter=True)`. --vad-only times get_speech_timestamps alone
on the decoded audio (median of REPS after one untimed run) and prints {"vad_s": ...}.
"""
import json
import sys
import time

start = time.perf_counter()
from faster_whisper import BatchedInferencePipeline, WhisperModel  # noqa: E402  (import time counts as load)

if sys.argv[1] == "--vad-only":
    import statistics

    from faster_whisper.audio import decode_audio
    from faster_whisper.vad import get_speech_timestamps

    audio = decode_audio(sys.argv[3])
    times = []
    for _ in range(int(sys.argv[2]) + 1):
        t0 = time.perf_counter()
        get_speech_timestamps(audio)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"vad_s": statistics.median(times[1:])}), file=sys.stderr)
    sys.exit(0)

model_dir, threads, beam = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = sys.argv[4:]
batch_size = 0
if files[:1] == ["--batch-size"]:
    batch_size, files = int(files[1]), files[2:]
vad_filter = files[:1] == ["--vad-filter"]
files = files[1:] if vad_filter else files
model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads)
loaded = time.perf_counter()
options = {"beam_size": 1, "temperature": 0.0} if beam == 1 else {"beam_size": beam}
if batch_size:
    pipeline = BatchedInferencePipeline(model)
for path in files:
    if batch_size:
        segments, _ = pipeline.transcribe(path, batch_size=batch_size, **options)
    else:
        segments, _ = model.transcribe(path, vad_filter=vad_filter, **options)
    print("".join(s.text for s in segments).strip(), flush=True)
done = time.perf_counter()
print(json.dumps({"load_s": loaded - start, "transcribe_s": done - loaded}), file=sys.stderr)
