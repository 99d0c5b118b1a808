"""`pj report KIND`: what a campaign did, read from DIR/jobs.jsonl (see command.py for the map)."""
