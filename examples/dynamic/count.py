"""Count the words of one chunk (given by a link); output the count (``words``)."""

import json
import os
import sys
from pathlib import Path

words = len(Path(sys.argv[1]).read_text(encoding="utf-8").split())
with open(os.environ["SOMAWF_OUTPUT_PARAMS"], "w", encoding="utf-8") as outputs:
    json.dump({"words": words}, outputs)
