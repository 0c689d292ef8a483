"""Split the input text into N chunk files (the pipeline's first step)."""

import sys
from pathlib import Path

source, parts = Path(sys.argv[1]), int(sys.argv[2])
lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
Path("work").mkdir(exist_ok=True)
for part in range(parts):
    Path(f"work/chunk{part}.txt").write_text("".join(lines[part::parts]), encoding="utf-8")
print(f"split {len(lines)} lines into {parts} chunks")
