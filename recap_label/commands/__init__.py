"""One module per command (copy, label, verify, rollback): library functions that return result
objects. The CLI parses and prints; commands never import each other."""
