"""Count the words of one chunk (runs in parallel, one job per chunk)."""

import json
import re
import sys
from collections import Counter
from pathlib import Path

part = sys.argv[1]
words = re.findall(r"[a-z']+", Path(f"work/chunk{part}.txt").read_text(encoding="utf-8").lower())
Path(f"work/counts{part}.json").write_text(json.dumps(Counter(words)), encoding="utf-8")
print(f"chunk {part}: {len(words)} words")
