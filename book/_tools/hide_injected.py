"""Hide papermill's injected-parameters cell in executed notebooks (the reader sees results, not presets)."""
import json
import sys

for path in sys.argv[1:]:
    nb = json.load(open(path))
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
    with open(path, "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")
