"""Tidy executed notebooks: hide papermill's injected-parameters cell (the reader sees results, not presets) and drop
stderr streams (progress bars and library warnings belong in a terminal, not in the stored chapters)."""
import json
import sys

for path in sys.argv[1:]:
    nb = json.load(open(path))
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell["outputs"] if not (o["output_type"] == "stream" and
                                                                   o.get("name") == "stderr")]
    with open(path, "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")
