#!/usr/bin/env python3
"""faster-whisper's Silero VAD, vad_filter and batched outputs on the fixtures.

Usage: vad_references.py --fixtures ../shared/fixtures --tiny MODEL_DIR --base MODEL_DIR OUT_DIR [--threads N]

Runs the .venv's faster-whisper (CPU, float32) and writes into OUT_DIR:

  vad.json        every 16 kHz mono file of speech/ (lossless, as the manifest says) and real/ (the
                  16 kHz copies): the decoded length, the speech probability of every 512-sample
                  frame exactly as get_speech_timestamps computes them (get_vad_model() on the audio
                  padded to a multiple of 512), and get_speech_timestamps with the default
                  VadOptions ("timestamps") and with the options BatchedInferencePipeline uses
                  ("timestamps_30s": max_speech_duration_s=30, min_silence_duration_ms=160).
  vad_filter.json WhisperModel.transcribe(beam_size=1, temperature=0, vad_filter=True): tiny with
                  language en on the English files, base with the clip's language on the zh clips.
  batched.json    BatchedInferencePipeline.transcribe(batch_size=8, beam_size=1, temperature=0,
                  language given; its defaults otherwise: vad_filter, without_timestamps) on
                  speech/long_90s.wav, speech/long_5min.wav and every real/ clip (tiny for en,
                  base for zh), with the chunks collect_chunks made of the speech timestamps.

Each file: {"meta": {...}, "files": {NAME: {...}}}; the transcription records have the shape of
faster_whisper_references.py's (language, text, segments with id, seek, start, end, text, tokens,
...) plus duration, duration_after_vad and model. Probabilities are the float32 values written as
doubles, so they parse back to the same float32. OUT_DIR/.complete is written last.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import wave

from faster_whisper_references import real_files, record, speech_files

SAMPLE_RATE = 16000


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_16k_mono(path):
    """True for a 16 kHz mono WAV; other containers are trusted to the manifest."""
    if not path.endswith(".wav"):
        return True
    with wave.open(path) as w:
        return w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1


def vad_files(fixtures):
    """(name, language) of the 16 kHz mono files: speech/ per its manifest, real/ 16 kHz copies."""
    out = []
    for name, language in speech_files(fixtures) + real_files(fixtures):
        if is_16k_mono(os.path.join(fixtures, name)):
            out.append((name, language))
        else:
            print("skipping %s: not 16 kHz mono" % name, file=sys.stderr)
    return out


def options_dict(vad_options):
    d = dataclasses.asdict(vad_options)
    return {k: (None if isinstance(v, float) and v == float("inf") else v) for k, v in d.items()}


def write(out_dir, name, meta, files):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "files": files}, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
    ap.add_argument("--tiny", required=True, help="English tiny model (CTranslate2 layout)")
    ap.add_argument("--base", required=True, help="multilingual base model (CTranslate2 layout)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    import ctranslate2
    import numpy as np
    import onnxruntime
    import faster_whisper
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.audio import decode_audio
    from faster_whisper.utils import get_assets_path
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps, get_vad_model

    files = vad_files(args.fixtures)
    audio = {name: decode_audio(os.path.join(args.fixtures, name), sampling_rate=SAMPLE_RATE) for name, _ in files}
    os.makedirs(args.out_dir, exist_ok=True)
    meta = {"faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "vad_model_sha256": sha256(os.path.join(get_assets_path(), "silero_vad_v6.onnx")),
            "sample_rate": SAMPLE_RATE}

    # --- vad.json: probabilities and speech timestamps. ---
    default_options = VadOptions()
    # BatchedInferencePipeline.transcribe's VadOptions when vad_parameters is None (chunk_length 30).
    batched_options = VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160)
    vad = {}
    for name, _ in files:
        a = audio[name]
        padded = np.pad(a, (0, 512 - a.shape[0] % 512))  # as get_speech_timestamps pads
        probs = np.asarray(get_vad_model()(padded), dtype=np.float32).reshape(-1)
        vad[name] = {"samples": int(a.shape[0]),
                     "probs": [float(p) for p in probs],
                     "timestamps": get_speech_timestamps(a, default_options),
                     "timestamps_30s": get_speech_timestamps(a, batched_options)}
        print("vad %-44s %6d frames %2d / %2d speech chunks" % (
            name, len(probs), len(vad[name]["timestamps"]), len(vad[name]["timestamps_30s"])), file=sys.stderr)
    write(args.out_dir, "vad.json", dict(meta, frame_samples=512, context_samples=64,
                                         timestamps_options=options_dict(default_options),
                                         timestamps_30s_options=options_dict(batched_options)), vad)

    # --- Transcriptions. ---
    models = {
        "tiny": (args.tiny, WhisperModel(args.tiny, device="cpu", compute_type="float32", cpu_threads=args.threads)),
        "base": (args.base, WhisperModel(args.base, device="cpu", compute_type="float32", cpu_threads=args.threads)),
    }
    model_meta = {k: {"dir": os.path.basename(os.path.normpath(d)),
                      "config_sha256": sha256(os.path.join(d, "config.json"))} for k, (d, _) in models.items()}

    def pick(language):
        return ("tiny", "en") if language == "en" else ("base", language)

    def full_record(segments, info, model_name):
        r = record(segments, info)
        r.update(duration=info.duration, duration_after_vad=info.duration_after_vad, model=model_name)
        return r

    greedy = dict(beam_size=1, temperature=0.0)
    out = {}
    for name, language in files:
        model_name, lang = pick(language)
        ctranslate2.set_random_seed(0)
        segments, info = models[model_name][1].transcribe(audio[name], language=lang, vad_filter=True, **greedy)
        out[name] = full_record(segments, info, model_name)
        print("vad_filter %-44s %s %7.3f -> %7.3f s  %s" % (name, model_name, info.duration, info.duration_after_vad,
                                                           out[name]["text"][:50]), file=sys.stderr)
    write(args.out_dir, "vad_filter.json",
          dict(meta, models=model_meta, mode="vad_filter",
               options=dict(greedy, vad_filter=True, vad_parameters=options_dict(default_options),
                            language="en with tiny; the clip's language with base")), out)

    batch_size = 8
    batched_names = [(n, l) for n, l in files if n in ("speech/long_90s.wav", "speech/long_5min.wav")]
    batched_names += [(n, l) for n, l in files if n.startswith("real/")]
    pipelines = {k: BatchedInferencePipeline(m) for k, (_, m) in models.items()}
    out = {}
    for name, language in batched_names:
        model_name, lang = pick(language)
        ctranslate2.set_random_seed(0)
        segments, info = pipelines[model_name].transcribe(audio[name], language=lang, batch_size=batch_size, **greedy)
        out[name] = full_record(segments, info, model_name)
        # The 30 s windows the pipeline decodes: collect_chunks of the VAD speech timestamps.
        _, chunks = collect_chunks(audio[name], vad[name]["timestamps_30s"], max_duration=30)
        out[name]["chunks"] = [{"offset": c["offset"], "duration": c["duration"]} for c in chunks]
        print("batched %-44s %s %7.3f -> %7.3f s %d chunks  %s" % (
            name, model_name, info.duration, info.duration_after_vad, len(chunks), out[name]["text"][:50]),
            file=sys.stderr)
    write(args.out_dir, "batched.json",
          dict(meta, models=model_meta, mode="batched",
               options=dict(greedy, batch_size=batch_size, vad_filter=True, without_timestamps=True,
                            vad_parameters=options_dict(batched_options), chunk_length=30,
                            language="en with tiny; the clip's language with base")), out)
    open(os.path.join(args.out_dir, ".complete"), "w").close()


if __name__ == "__main__":
    start = time.monotonic()
    main()
    print("done in %.1f s" % (time.monotonic() - start), file=sys.stderr)
