"""stamp-schema.py IN OUT VERSION: a provider's Pulumi package schema with its version set, compact, for embedding.

Upstream releases embed the schema with the release version written in; the schemas here are the module's committed
one (kubernetes) or the one tfgen generates at build time (random, tls), which carry no version.
"""

import json
import sys
from pathlib import Path

source, target, version = sys.argv[1:4]
schema = json.loads(Path(source).read_text())
schema["version"] = version
Path(target).write_text(json.dumps(schema, separators=(",", ":")))
