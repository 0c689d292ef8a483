"""Add the counts (in its parameters file: the count jobs' outputs, linked into one list)."""

import json
import os
from pathlib import Path

text = Path(os.environ["SOMAWF_INPUT_PARAMS"]).read_text(encoding="utf-8")
counts = json.loads(text)["parameters"]["counts"]
with open("result.txt", "w", encoding="utf-8") as result:
    print(f"{sum(counts)} words in {len(counts)} chunks", file=result)
