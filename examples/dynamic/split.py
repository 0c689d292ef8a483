"""Split a text into N chunk files; output their paths (output parameter ``chunks``)."""

import json
import os
import sys
from pathlib import Path

source, parts = sys.argv[1], int(sys.argv[2])
lines = Path(source).read_text(encoding="utf-8").splitlines(keepends=True)
chunks = []
for number in range(parts):
    path = os.path.abspath(f"chunk{number}.txt")
    with open(path, "w", encoding="utf-8") as chunk:
        chunk.writelines(lines[number::parts])
    chunks.append(path)
with open(os.environ["SOMAWF_OUTPUT_PARAMS"], "w", encoding="utf-8") as outputs:
    json.dump({"chunks": chunks}, outputs)
