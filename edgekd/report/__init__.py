"""Reports: building report.json from a run folder, rendering it, and comparing reports."""
