#!/usr/bin/env python3
"""Accuracy on real human speech: tingxie beside faster-whisper, in the same run.

What it measures
  Every file of FIXTURES/real/ (English LibriSpeech and AISHELL-1 Mandarin clips, with human
  reference texts in real/manifest.tsv; see real/README.md) is transcribed by both engines with
  the same model, the same decoding mode and the language from the manifest:
    - tiny.en (--tiny): the English files; base (--base, multilingual): every file.
    - modes: greedy (beam 1, temperature 0), beam5 (library defaults: beam 5 with the
      temperature fallback), and, for base on the Mandarin files only, greedy+simplified
      (greedy with the prompt "以下是普通话的句子。", tingxie's --zh-script simplified).
  faster-whisper: WhisperModel(dir, device="cpu", compute_type="float32", cpu_threads=N),
  transcribe(file, language=L, vad_filter=False, ...), text = the segments' texts joined.
  tingxie: one `tingxie transcribe --format json` process per model, mode and language, with all
  of that language's files at once (it prints one JSON document per file, in order).

Scoring (real/README.md)
  English: WER after lower-casing and stripping punctuation ("basic"), and WER after Whisper's
  English normaliser (whisper-normalizer==0.1.15, EnglishTextNormalizer; "normalised").
  Mandarin: CER over characters after removing punctuation and spaces and converting
  traditional to simplified characters (opencc-python-reimplemented==0.1.7, OpenCC("t2s")).
  zh_sr_chinese is transcribed and shown but not scored (its reference is another recogniser's
  output). Error rates are corpus-level (total edits / total reference words or characters,
  jiwer), not per-file averages. "same text" counts the scored files where the two engines'
  texts are identical (before any normalisation).

The table goes to stdout (markdown), per-file lines to stderr as the run goes.

Run (from the repository root):
  nice -n 10 .venv/bin/python bench/multilingual_accuracy.py \
      --tingxie /var/cache/tingxie/target/release/tingxie --threads 2 --out accuracy.md
Without --tingxie only the faster-whisper columns are filled. --resampled uses the .16k.wav
copies in place of originals that are not 16 kHz PCM (to check that decoding them is no factor).
"""
import argparse
import csv
import json
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZH_PROMPT = "以下是普通话的句子。"
UNSCORED = {"zh_sr_chinese.flac"}

# mode name -> (faster-whisper transcribe() options, tingxie flags)
MODES = {
    "greedy": ({"beam_size": 1, "temperature": 0.0}, ["--beam-size", "1", "--temperature", "0"]),
    "beam5": ({}, ["--beam-size", "5"]),
    "greedy+simplified": (
        {"beam_size": 1, "temperature": 0.0, "initial_prompt": ZH_PROMPT},
        ["--beam-size", "1", "--temperature", "0", "--zh-script", "simplified"],
    ),
}


def missing_packages_exit(error):
    sys.exit(
        f"multilingual_accuracy: {error}\n"
        "Install the scoring packages into this interpreter:\n"
        f"  {sys.executable} -m pip install whisper-normalizer==0.1.15 opencc-python-reimplemented==0.1.7"
    )


try:
    import jiwer
except ImportError as e:
    sys.exit(f"multilingual_accuracy: {e}: run it with the project's venv (.venv/bin/python: "
             "faster-whisper 1.2.1, jiwer)")
try:
    from opencc import OpenCC
    from whisper_normalizer.english import EnglishTextNormalizer
except ImportError as e:
    missing_packages_exit(e)


@dataclass
class Clip:
    file: str
    language: str
    reference: str
    path: Path

    @property
    def scored(self):
        return self.file not in UNSCORED


@dataclass
class Row:
    model: str
    mode: str
    language: str
    clips: list = field(default_factory=list)
    tingxie: list = field(default_factory=list)  # texts, or None where tingxie did not run
    faster_whisper: list = field(default_factory=list)


# --- scoring ---------------------------------------------------------------------------------

_english_normaliser = EnglishTextNormalizer()
_t2s = OpenCC("t2s")


def basic_english(text):
    """Lower case; apostrophes dropped, other punctuation becomes a space."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


def normalised_english(text):
    return " ".join(_english_normaliser(text).split())


def mandarin_chars(text):
    """Simplified characters with punctuation, symbols and spaces removed."""
    text = _t2s.convert(text).lower()
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def corpus_error(language, references, hypotheses, normalise=False):
    """Corpus-level WER (en) or CER (zh); None where the texts are missing or nothing to score."""
    if not references or any(h is None for h in hypotheses):
        return None
    if language == "zh":
        return jiwer.cer([mandarin_chars(r) for r in references], [mandarin_chars(h) for h in hypotheses])
    clean = normalised_english if normalise else basic_english
    return jiwer.wer([clean(r) for r in references], [clean(h) for h in hypotheses])


def file_error(language, reference, hypothesis):
    return corpus_error(language, [reference], [hypothesis])


# --- inputs ----------------------------------------------------------------------------------

def read_manifest(real_dir, resampled):
    clips = []
    with open(real_dir / "manifest.tsv", newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            path = real_dir / rec["file"]
            copy = path.with_name(path.stem + ".16k.wav")
            if resampled and copy.exists():
                path = copy
            clips.append(Clip(rec["file"], rec["language"], rec["reference_text"], path))
    return clips


def model_plan(args):
    """(model name, model dir, languages it is run on) for the models that exist."""
    plan = []
    for name, directory, languages in (("tiny.en", args.tiny, {"en"}), ("base", args.base, None)):
        if (directory / "model.bin").exists() or (directory / "model.safetensors").exists():
            plan.append((name, directory, languages))
        else:
            print(f"note: no model in {directory}: skipping {name}", file=sys.stderr)
    return plan


def modes_for(model_name, language):
    if model_name == "base" and language == "zh":
        return ["greedy", "beam5", "greedy+simplified"]
    return ["greedy", "beam5"]


# --- engines ---------------------------------------------------------------------------------

def faster_whisper_text(model, clip, mode):
    options = MODES[mode][0]
    segments, _ = model.transcribe(str(clip.path), language=clip.language, vad_filter=False, **options)
    return "".join(s.text for s in segments).strip()


def tingxie_texts(binary, model_dir, threads, language, mode, clips):
    """One tingxie process for all clips of one language; its JSON Lines, one per file, in order."""
    command = [str(binary), "transcribe", "--threads", str(threads), "--model", str(model_dir),
               "--format", "json", "--language", language, *MODES[mode][1],
               *(str(c.path) for c in clips)]
    print("$ " + " ".join(command), file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    documents = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or len(documents) != len(clips):
        print(f"WARNING: tingxie failed (exit {done.returncode}, {len(documents)} of {len(clips)} "
              f"documents); its columns stay empty for this row:\n{done.stderr}", file=sys.stderr)
        return [None] * len(clips)
    return [d["text"].strip() for d in documents]


# --- the run ---------------------------------------------------------------------------------

def log_file(row, clip, tingxie, faster):
    def cell(text):
        if text is None:
            return "     -"
        error = file_error(clip.language, clip.reference, text) if clip.scored else None
        return f"{'unscored' if error is None else f'{100 * error:5.1f}%'}"

    same = "" if tingxie is None else "same" if tingxie == faster else "DIFF"
    print(f"{row.model:7} {row.mode:17} {clip.file:32} tingxie {cell(tingxie)} | faster-whisper "
          f"{cell(faster)} | {same}", file=sys.stderr)
    if tingxie is not None:
        print(f"    tingxie:        {tingxie}", file=sys.stderr)
    print(f"    faster-whisper: {faster}", file=sys.stderr)


def run_row(row, fw_model, args, model_dir):
    started = time.perf_counter()
    tingxie = [None] * len(row.clips)
    if args.tingxie:
        tingxie = tingxie_texts(args.tingxie, model_dir, args.threads, row.language, row.mode, row.clips)
    faster = [faster_whisper_text(fw_model, clip, row.mode) for clip in row.clips]
    for clip, t, f in zip(row.clips, tingxie, faster):
        log_file(row, clip, t, f)
        if clip.scored:
            row.tingxie.append(t)
            row.faster_whisper.append(f)
    row.clips = [c for c in row.clips if c.scored]
    print(f"    ({time.perf_counter() - started:.1f} s)", file=sys.stderr)


def run(args):
    from faster_whisper import WhisperModel

    clips = read_manifest(args.fixtures / "real", args.resampled)
    rows = []
    for name, model_dir, languages in model_plan(args):
        fw_model = WhisperModel(str(model_dir), device="cpu", compute_type="float32", cpu_threads=args.threads)
        for language in sorted({c.language for c in clips if languages is None or c.language in languages}):
            for mode in modes_for(name, language):
                row = Row(name, mode, language, [c for c in clips if c.language == language])
                run_row(row, fw_model, args, model_dir)
                rows.append(row)
    return rows


# --- the table -------------------------------------------------------------------------------

def percent(value):
    return "–" if value is None else f"{100 * value:.1f} %"


def table(rows):
    header = ["model", "mode", "language", "files scored", "tingxie WER/CER basic",
              "faster-whisper WER/CER basic", "tingxie WER normalised", "faster-whisper WER normalised",
              "same text"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        refs = [c.reference for c in row.clips]
        english = row.language == "en"
        metric = "WER" if english else "CER"
        ran_tingxie = all(t is not None for t in row.tingxie)
        cells = [
            row.model, row.mode, row.language, str(len(row.clips)),
            f"{metric} {percent(corpus_error(row.language, refs, row.tingxie))}",
            f"{metric} {percent(corpus_error(row.language, refs, row.faster_whisper))}",
            percent(corpus_error("en", refs, row.tingxie, normalise=True)) if english else "–",
            percent(corpus_error("en", refs, row.faster_whisper, normalise=True)) if english else "–",
            f"{sum(t == f for t, f in zip(row.tingxie, row.faster_whisper))}/{len(row.clips)}"
            if ran_tingxie else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tingxie", type=Path, help="the tingxie binary (omit: faster-whisper only)")
    p.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures")
    p.add_argument("--tiny", type=Path, default=REPO / "models" / "whisper-tiny-en")
    p.add_argument("--base", type=Path, default=REPO / "models" / "whisper-base")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    p.add_argument("--resampled", action="store_true",
                   help="use the .16k.wav copies where the original is not 16 kHz PCM")
    return p.parse_args()


def main():
    args = parse_args()
    if args.tingxie and not args.tingxie.exists():
        sys.exit(f"multilingual_accuracy: no tingxie binary at {args.tingxie}")
    rows = run(args)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
