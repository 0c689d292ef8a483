"""Merge the chunk counts and print the most common words (the last step)."""

import json
import sys
from collections import Counter
from pathlib import Path

total: Counter[str] = Counter()
for part in range(int(sys.argv[1])):
    total.update(json.loads(Path(f"work/counts{part}.json").read_text(encoding="utf-8")))
Path("result.txt").write_text(
    "".join(f"{count:6d} {word}\n" for word, count in total.most_common(10)), encoding="utf-8")
print(f"{sum(total.values())} words, {len(total)} distinct; top 10 in result.txt")
