#!/usr/bin/env python3
"""Checks the licence of every dependency against licenses.toml, offline of any service:
`cargo metadata` gives each package's SPDX expression. Exit 1 naming each package whose
licence the allow-list cannot satisfy."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = "x86_64-unknown-linux-gnu"


def satisfiable(expression: str, allowed: set) -> bool:
    """SPDX expression over `allowed`: OR needs one side, AND both; `A WITH B` is one licence.
    Old crates write `MIT/Apache-2.0` for an OR."""
    tokens = re.findall(r"\(|\)|[^\s()]+(?:\s+WITH\s+[^\s()]+)?", expression.replace("/", " OR "))
    position = 0

    def primary() -> bool:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "(":
            value = disjunction()
            position += 1  # ")"
            return value
        return re.sub(r"\s+", " ", token) in allowed

    def conjunction() -> bool:
        nonlocal position
        value = primary()
        while position < len(tokens) and tokens[position] == "AND":
            position += 1
            value = primary() and value
        return value

    def disjunction() -> bool:
        nonlocal position
        value = conjunction()
        while position < len(tokens) and tokens[position] == "OR":
            position += 1
            value = conjunction() or value
        return value

    return disjunction() and position == len(tokens)


def main() -> int:
    policy = tomllib.loads((REPO / "licenses.toml").read_text())
    allowed = set(policy["allowed"])
    files = policy.get("license_files", {})
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET],
        cwd=REPO, check=True, capture_output=True, text=True).stdout)
    reachable = {node["id"] for node in metadata["resolve"]["nodes"]}
    ours = set(metadata["workspace_members"])
    refused, checked = [], 0
    for package in metadata["packages"]:
        if package["id"] not in reachable or package["id"] in ours:
            continue
        checked += 1
        expression = package["license"] or files.get(package["name"])
        if not expression or not satisfiable(expression, allowed):
            refused.append(f"{package['name']} {package['version']}: {package['license'] or 'licence file only, not in licenses.toml'}")
    for line in refused:
        print(f"licence not allowed: {line}", file=sys.stderr)
    print(f"{checked} dependencies checked, {len(refused)} refused")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
