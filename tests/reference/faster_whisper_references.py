#!/usr/bin/env python3
"""faster-whisper's output on the fixtures, for the multilingual parity tests (issue 22).

Usage: faster_whisper_references.py MODEL_DIR OUT_DIR [--threads N]

Runs faster-whisper (the .venv's, CPU, float32) on the multilingual model in MODEL_DIR and writes
one JSON file per mode into OUT_DIR:

  greedy.json         beam_size=1, temperature=0, language given: real/ (16 kHz copies) and the
                      lossless 16 kHz files of speech/
  beam5.json          the library defaults (beam 5, temperature fallback), language given: same files
  detect.json         language=None: the detected language and its probability, real/
  translate.json      task="translate", language zh, greedy and beam 5: the AISHELL clips
  zh_simplified.json  greedy, language zh, initial_prompt "以下是普通话的句子。": every zh clip

Each file: {"meta": {...}, "files": {NAME: {language, language_probability, text, segments}}}
(segments as the speech/ references: id, seek, start, end, text, tokens, temperature, ...).
OUT_DIR/.complete is written last; the Makefile regenerates a folder without it.
"""
import argparse
import csv
import json
import os
import sys

ZH_SIMPLIFIED_PROMPT = "以下是普通话的句子。"


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def real_files(fixtures):
    """(file, language) for real/: the 16 kHz copy where the original is not 16 kHz PCM."""
    real = os.path.join(fixtures, "real")
    out = []
    for row in read_tsv(os.path.join(real, "manifest.tsv")):
        name = row["file"]
        copy = os.path.splitext(name)[0] + ".16k.wav"
        if os.path.exists(os.path.join(real, copy)):
            name = copy
        out.append(("real/" + name, row["language"]))
    return out


def speech_files(fixtures):
    """The lossless 16 kHz mono files of speech/ (the tiny.en parity set), English."""
    rows = read_tsv(os.path.join(fixtures, "speech", "manifest.tsv"))
    return [("speech/" + r["file"], "en") for r in rows
            if r["sample_rate"] == "16000" and r["channels"] == "1" and r["codec"] in ("pcm_s16le", "flac")]


def record(segments, info):
    segs = list(segments)
    return {
        "language": info.language,
        "language_probability": info.language_probability,
        "text": "".join(s.text for s in segs).strip(),
        "segments": [
            {"id": s.id, "seek": s.seek, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text,
             "tokens": list(s.tokens), "temperature": s.temperature, "avg_logprob": round(s.avg_logprob, 6),
             "compression_ratio": round(s.compression_ratio, 6), "no_speech_prob": round(s.no_speech_prob, 6)}
            for s in segs
        ],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    import ctranslate2
    import faster_whisper
    from faster_whisper import WhisperModel

    model = WhisperModel(args.model_dir, device="cpu", compute_type="float32", cpu_threads=args.threads)
    real, speech = real_files(args.fixtures), speech_files(args.fixtures)
    zh = [(f, l) for f, l in real if l == "zh"]
    aishell = [(f, l) for f, l in zh if "aishell" in f]
    greedy = dict(beam_size=1, temperature=0.0)
    modes = {
        "greedy": [(f, dict(greedy, language=l)) for f, l in real + speech],
        "beam5": [(f, dict(language=l)) for f, l in real + speech],
        "detect": [(f, dict(greedy, language=None)) for f, _ in real],
        "translate": [(f, dict(task="translate", language="zh", **kw)) for f, _ in aishell for kw in (greedy, {})],
        "zh_simplified": [(f, dict(greedy, language="zh", initial_prompt=ZH_SIMPLIFIED_PROMPT)) for f, _ in zh],
    }
    os.makedirs(args.out_dir, exist_ok=True)
    for mode, runs in modes.items():
        # Sampling at a fallback temperature is reproducible for this file order only.
        ctranslate2.set_random_seed(0)
        files = {}
        for name, kwargs in runs:
            segments, info = model.transcribe(os.path.join(args.fixtures, name), vad_filter=False, **kwargs)
            if mode == "detect":
                segments = []  # the language is known before any window is decoded
            key = name if mode != "translate" else "%s#beam%d" % (name, kwargs.get("beam_size", 5))
            files[key] = record(segments, info)
            print("%-14s %-44s %s %.4f %s" % (mode, key, info.language, info.language_probability,
                                              files[key]["text"][:60]), file=sys.stderr)
        meta = {"faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__,
                "device": "cpu", "compute_type": "float32", "model": os.path.basename(os.path.normpath(args.model_dir)),
                "mode": mode}
        with open(os.path.join(args.out_dir, mode + ".json"), "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "files": files}, f, indent=1, ensure_ascii=False)
            f.write("\n")
    open(os.path.join(args.out_dir, ".complete"), "w").close()


if __name__ == "__main__":
    main()
