"""Everything recap-label keeps on disk and how it is written: the paths under meta/recap_label,
durable file operations, crash points, the dataset lock, the journaled commit, lineage records."""
