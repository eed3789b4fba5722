"""Helpers shared by the PyTorch peers of the GPU benchmarks, moe_torch.py (dsv2_gpu_moe_bench's
peer) and mla_decode_torch.py (dsv2_gpu_bench's peer): comma lists, the skip without a CUDA
device, CUDA-event timing, the device-to-device copy both measure beside their op, the device's
description, the copy lines of their tables and the JSON they write and read.

The scripts import it as a sibling (they put their own directory on sys.path), so they run from
anywhere: `python3 tools/bench/moe_torch.py ...`, or "$ROOT/tools/bench/moe_torch.py" from
tools/gpu/gpu_check.sh. Nothing here imports torch; the callers pass it in.
"""
import json
import statistics

SKIP_EXIT = 77  # CTest's skip code, as the C++ benchmarks exit without a device
NO_COPY = {"bytes": 0, "median_s": 0, "gbs": 0}


def ints(s):
    """"1,8,64" -> [1, 8, 64]; empty items are skipped ("" -> [])."""
    return [int(v) for v in s.split(",") if v.strip()]


def words(s):
    """"bf16, fp32" -> ["bf16", "fp32"]; empty items are skipped."""
    return [v.strip() for v in s.split(",") if v.strip()]


def cuda_missing(torch):
    """True (after printing the SKIPPED line) when PyTorch sees no CUDA device; the caller then
    returns SKIP_EXIT."""
    if torch.cuda.is_available():
        return False
    print("SKIPPED: torch.cuda.is_available() is False (no CUDA device for PyTorch)")
    return True


def event_times(torch, n, fn):
    """Seconds of each of n calls fn(r), each between two torch.cuda.Events on the current stream
    (one synchronize after the last)."""
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    stops = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for r in range(n):
        starts[r].record()
        fn(r)
        stops[r].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, stops)]


def measure_copy(torch, gib, times, device="cuda"):
    """A device-to-device copy of `gib` GiB (the C++ benchmarks' cudaMemcpy): one warm-up, then the
    median of 5 timed by times(n, fn) -> seconds of each of n calls fn(r) (event_times, or the
    caller's own clock). bytes counts what is read plus what is written; NO_COPY for gib = 0."""
    n = int(gib * 2**30)
    if n <= 0:
        return dict(NO_COPY)
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(0x5A)
    dst = torch.empty_like(src)
    dst.copy_(src)
    t = times(5, lambda r: dst.copy_(src))
    med = statistics.median(t)
    del src, dst
    return {"bytes": 2.0 * n, "median_s": med, "gbs": 2.0 * n / med / 1e9}


def device_description(props):
    """"NVIDIA H200, sm_90, 139 GiB" from torch.cuda.get_device_properties(i)."""
    return f"{props.name}, sm_{props.major}{props.minor}, {props.total_memory >> 30} GiB"


def print_copy(copy, extra=""):
    """The table's device-copy line (nothing when no copy was measured); extra is appended."""
    if (copy or {}).get("bytes"):
        print(f"  device copy: {copy['bytes'] / 2 / 2**30:.1f} GiB in {copy['median_s'] * 1e3:.3f} ms = "
              f"{copy['gbs']:.0f} GB/s (read + write){extra}")


def load_json(path):
    with open(path) as f:
        return json.load(f)


def print_copy_ratio(ours, doc, tool):
    """The last line of a ratio table: both device copies (ours: the JSON of `tool`, the C++
    benchmark; doc: this script's), where both were measured."""
    dc, tc = (ours.get("copy") or {}).get("gbs"), (doc.get("copy") or {}).get("gbs")
    if dc and tc:
        print(f"  device copy: {tool} {dc:.0f} GB/s, PyTorch {tc:.0f} GB/s (read + write)")


def finish(doc, args, against):
    """The scripts' last steps: the ratio table against args.against (against(doc, path), which
    stores it in doc), then the JSON to args.json."""
    if args.against:
        against(doc, args.against)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
