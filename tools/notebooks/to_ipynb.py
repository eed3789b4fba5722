#!/usr/bin/env python3
"""Writes the C++ notebooks as .ipynb files carrying the outputs of their compiled run.

Each notebooks-cpp/NN_name.cpp is a jupytext percent-format notebook and also a program
(built by CMake as <bin>/NN_name). This script runs the program, splits its stdout on the marker
lines that nb.hpp's cell(n) prints ("<<<nb-cell n>>>"), converts the .cpp with jupytext and
attaches output n to the code cell that contains `cell(n);`. The kernelspec is xeus-cling's
xcpp17, so the notebook opens (and re-runs) in a C++ kernel.

    python3 tools/notebooks/to_ipynb.py --src notebooks-cpp --bin build/notebooks/bin --out build/notebooks

`make notebooks` builds the programs and runs this. Exit status 1 when a program fails (its
notebook is still written, with the output up to the failure) or a marker has no cell.
"""
import argparse
import pathlib
import re
import subprocess
import sys

import jupytext
import nbformat

MARKER = re.compile(r"^<<<nb-cell (\d+)>>>\n", re.M)
CELL_CALL = re.compile(r"^\s*cell\((\d+)\);", re.M)
KERNELSPEC = {"name": "xcpp17", "display_name": "C++17", "language": "c++"}
LANGUAGE_INFO = {"name": "c++", "version": "17", "mimetype": "text/x-c++src",
                 "file_extension": ".cpp", "codemirror_mode": "text/x-c++src"}


def split_outputs(stdout: str) -> dict:
    """{n: text printed after marker n and before the next marker}."""
    parts = MARKER.split(stdout)
    # parts = [before the first marker, n1, text1, n2, text2, ...]
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def convert(src: pathlib.Path, program: pathlib.Path, out_dir: pathlib.Path) -> bool:
    ok = True
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        print(f"to_ipynb: {program.name} exited {run.returncode}: {run.stderr.strip()[-500:]}", file=sys.stderr)
        ok = False
    outputs = split_outputs(run.stdout)

    nb = jupytext.read(src, fmt="cpp:percent")
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    nb.metadata.pop("jupytext", None)  # a generated file: no pairing with a .cpp beside it
    used = set()
    count = 0
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        count += 1
        c.execution_count = count
        c.outputs = []
        m = CELL_CALL.search(c.source)
        if m:
            n = int(m.group(1))
            text = outputs.get(n, "")
            used.add(n)
            if text:
                c.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
    missing = sorted(set(outputs) - used)
    if missing:
        print(f"to_ipynb: {src.name}: output of cell(s) {missing} has no code cell", file=sys.stderr)
        ok = False
    nbformat.validate(nb)
    out = out_dir / (src.stem + ".ipynb")
    nbformat.write(nb, out)
    print(f"to_ipynb: {out} ({len(outputs)} outputs{'' if ok else ', FAILED'})")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="notebooks-cpp", help="directory of the NN_name.cpp notebooks")
    ap.add_argument("--bin", default="build/notebooks/bin", help="directory of the built notebook programs")
    ap.add_argument("--out", default="build/notebooks", help="where the .ipynb files go")
    args = ap.parse_args()
    src_dir, bin_dir, out_dir = pathlib.Path(args.src), pathlib.Path(args.bin), pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(src_dir.glob("[0-9][0-9]_*.cpp"))
    if not sources:
        print(f"to_ipynb: no notebooks in {src_dir}", file=sys.stderr)
        return 1
    ok = True
    for src in sources:
        program = bin_dir / src.stem
        if not program.exists():
            print(f"to_ipynb: {program} is not built (cmake --build build --target notebook_programs)", file=sys.stderr)
            ok = False
            continue
        ok = convert(src, program, out_dir) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
