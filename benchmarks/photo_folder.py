"""Loading a folder of phone photos: wall time and peak memory of ``load_dataset`` + ``arrays``, two commits.

    python benchmarks/photo_folder.py BASELINE_REV NEW_REV [--runs 3] [--photos 48] [--size 96]

Writes ``--photos`` synthetic 12-megapixel JPEGs (4032x3024, smooth photo-like content, quality 90; every
other one stored as a phone stores a portrait photo: landscape pixels plus EXIF orientation 6) into two
class folders under a temporary folder, then loads them in a fresh process per run, runs alternated between
the two commits (each commit's src/ taken with ``git archive``, run with this interpreter's packages):
``load_dataset(folder)`` then ``Dataset.arrays("train", (size, size), "rgb")``, what ``train`` does first.
Prints each run's seconds and peak resident memory (``ru_maxrss``), and the medians. Then, for the new
commit, how far the model input from the kept (reduced) photos is from the input made from the full
photos, in levels of 255, at a few input sizes (each loaded with ``load_cap(size)``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from visioncascade.data import load_dataset
dataset = load_dataset(sys.argv[1])
x, y = dataset.arrays("train", (int(sys.argv[2]),) * 2, "rgb")
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "images": len(y), "shapes": sorted({str(i.shape) for i in dataset.splits["train"].images})}))
"""

FIDELITY = """
import sys
import numpy as np
from visioncascade.data import load_cap, load_dataset
full = load_dataset(sys.argv[1], max_short_side=None)
for size in (64, 96, 224):
    kept = load_dataset(sys.argv[1], max_short_side=load_cap(size))
    a = kept.arrays("train", (size, size), "rgb")[0].astype(int)
    b = full.arrays("train", (size, size), "rgb")[0].astype(int)
    diff = np.abs(a - b)
    print(f"input {size} px, kept at shorter side {load_cap(size)}: differs from the full photos' input by "
          f"at most {diff.max()}, mean {diff.mean():.3f}, 99th percentile {np.percentile(diff, 99):.0f}")
"""


def write_photos(root: Path, count: int) -> None:
    """``count`` 12-megapixel JPEGs in ``root/{cat,dog}``, every other one with EXIF orientation 6."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        pixels = cv2.resize(small, (4032, 3024), interpolation=cv2.INTER_CUBIC)
        pixels = cv2.add(pixels, rng.integers(0, 20, pixels.shape, dtype=np.uint8))  # sensor noise
        image = Image.fromarray(pixels)
        tags = image.getexif()
        if i % 4 < 2:
            tags[0x0112] = 6
        image.save(folder / f"{i}.jpg", quality=90, exif=tags.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revs", nargs=2, help="baseline and new commit")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--size", type=int, default=96, help="model input size for arrays()")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        write_photos(work / "photos", args.photos)
        megabytes = sum(f.stat().st_size for f in (work / "photos").rglob("*.jpg")) / 1e6
        print(
            f"{args.photos} photos, 4032x3024, {megabytes:.0f} MB of JPEG (written in "
            f"{time.perf_counter() - started:.0f} s); input {args.size} px"
        )
        for rev in args.revs:
            (work / rev).mkdir()
            archive = subprocess.run(
                ["git", "archive", rev, "src"], cwd=repo, check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", str(work / rev)], input=archive.stdout, check=True)
        results: dict[str, list[dict]] = {rev: [] for rev in args.revs}
        for run in range(1, args.runs + 1):
            for rev in args.revs:
                child = subprocess.run(
                    [sys.executable, "-c", CHILD, str(work / "photos"), str(args.size)],
                    env={"PYTHONPATH": str(work / rev / "src"), "PATH": "/usr/bin:/bin"},
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(child.stdout.strip().splitlines()[-1])
                results[rev].append(result)
                print(
                    f"{rev:<12} run {run}: {result['seconds']:6.2f} s, peak {result['peak_mb']:7.0f} MB, "
                    f"{result['images']} images kept as {', '.join(result['shapes'])}"
                )
        for rev, runs in results.items():
            seconds = statistics.median(r["seconds"] for r in runs)
            peak = statistics.median(r["peak_mb"] for r in runs)
            print(f"{rev:<12} median {seconds:6.2f} s, peak {peak:7.0f} MB")
        fidelity = subprocess.run(
            [sys.executable, "-c", FIDELITY, str(work / "photos")],
            env={"PYTHONPATH": str(work / args.revs[1] / "src"), "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
            text=True,
        )
        print(f"{args.revs[1]}: " + f"\n{args.revs[1]}: ".join(fidelity.stdout.strip().splitlines()))


if __name__ == "__main__":
    main()
