"""What visitors and staff contribute and what curators decide on it: the inbox (a folder or a
PostgreSQL database behind one interface) and its quota, curators' decisions and label sheets,
catalogue edits, the review queue and its sheets, and the Label Studio interchange. Below the data
layer: the merge reads these records, nothing here imports the merge."""
