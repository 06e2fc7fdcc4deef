#!/usr/bin/env python3
"""Every COPY/ADD source of the Dockerfile exists and is inside the build context.

    dockerfile_check.py [Dockerfile]

Checks, for each COPY/ADD that reads the build context (not --from=stage): the source (with
ARG defaults substituted) exists in the repository, and .dockerignore does not exclude it or any
file under it (Docker's rules: patterns in order, the last match wins, `!` re-includes, a
pattern matching a parent directory matches everything under it). Also that every --from names
an earlier stage and each stage name is unique. Exit status 1 when anything fails.
"""
import os
import re
import shlex
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def instructions(text):
    """(line number, instruction, rest) with continuation lines joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def pattern_regex(pattern):
    p = pattern.strip().lstrip("/").rstrip("/")
    rx, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            rx += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            rx += ".*"
            i += 2
        elif p[i] == "*":
            rx += "[^/]*"
            i += 1
        elif p[i] == "?":
            rx += "[^/]"
            i += 1
        else:
            rx += re.escape(p[i])
            i += 1
    return re.compile(rx + r"\Z")


def load_ignore(path):
    rules = []
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            rules.append((neg, pattern_regex(line[1:] if neg else line)))
    return rules


def excluded(rel, rules):
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    state = False
    for neg, rx in rules:
        if any(rx.match(p) for p in prefixes):
            state = not neg
    return state


def main():
    dockerfile = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Dockerfile")
    text = open(dockerfile, encoding="utf-8").read()
    rules = load_ignore(os.path.join(os.path.dirname(os.path.abspath(dockerfile)), ".dockerignore"))
    args, stages, failures, checked = {}, [], 0, 0
    for line, word, rest in instructions(text):
        if word == "ARG":
            name, _, default = rest.partition("=")
            if default or name not in args:
                args[name.strip()] = default.strip().strip('"')
        elif word == "FROM":
            toks = rest.split()
            if len(toks) >= 3 and toks[-2].upper() == "AS":
                name = toks[-1]
                if name in stages:
                    print(f"FAIL Dockerfile:{line}: stage {name} defined twice")
                    failures += 1
                stages.append(name)
        elif word in ("COPY", "ADD"):
            toks = shlex.split(rest)
            flags = [t for t in toks if t.startswith("--")]
            paths = [t for t in toks if not t.startswith("--")]
            src_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if src_stage is not None:
                ok = src_stage in stages[:-1] or "/" in src_stage or ":" in src_stage
                print(f"{'PASS' if ok else 'FAIL'} Dockerfile:{line}: --from={src_stage} is an "
                      f"earlier stage")
                failures += not ok
                continue
            for src in paths[:-1]:
                src = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), src)
                full = os.path.join(ROOT, src)
                checked += 1
                if not os.path.exists(full):
                    print(f"FAIL Dockerfile:{line}: COPY source {src} does not exist"
                          + (" (run `make models` first)" if src.startswith("models/") else ""))
                    failures += 1
                    continue
                files = [src] if os.path.isfile(full) else [
                    os.path.relpath(os.path.join(d, f), ROOT)
                    for d, _, fs in os.walk(full) if "/target" not in d for f in fs]
                gone = [f for f in files if excluded(f, rules)]
                if excluded(src.rstrip("/"), rules) or (files and len(gone) == len(files)):
                    print(f"FAIL Dockerfile:{line}: COPY source {src} is excluded by .dockerignore")
                    failures += 1
                else:
                    print(f"PASS Dockerfile:{line}: COPY source {src} exists and is in the context"
                          + (f" ({len(gone)} files under it ignored)" if gone else ""))
    if checked == 0:
        print("FAIL no COPY source found")
        failures += 1
    print(f"dockerfile: {checked} COPY sources, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
