"""LeRobot datasets as they are on disk (v2.1, v3.0): metadata, columns, frames, and the
`local/<name>` registry of the LeRobot cache. Reading only, apart from the registry links."""
