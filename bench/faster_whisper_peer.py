#!/usr/bin/env python3
"""The benchmark peer: faster-whisper 1.2.1 transcribing the same files with the same settings.

usage: faster_whisper_peer.py MODEL_DIR THREADS BEAM_SIZE FILE...
Prints one transcript per line; on stderr a JSON line with the model-load and transcription
seconds. BEAM_SIZE 1 means greedy at temperature 0 only (the reference's `greedy` mode);
otherwise faster-whisper's defaults with that beam size.
"""
import json
import sys
import time

start = time.perf_counter()
from faster_whisper import WhisperModel  # noqa: E402  (import time counts as load)

model_dir, threads, beam = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads)
loaded = time.perf_counter()
options = {"beam_size": 1, "temperature": 0.0} if beam == 1 else {"beam_size": beam}
for path in sys.argv[4:]:
    segments, _ = model.transcribe(path, vad_filter=False, **options)
    print("".join(s.text for s in segments).strip(), flush=True)
done = time.perf_counter()
print(json.dumps({"load_s": loaded - start, "transcribe_s": done - loaded}), file=sys.stderr)
