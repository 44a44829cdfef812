"""The `forkq` command: `main` holds the group and the small commands; each bigger command
(worker, inspect, dead, demo) is a module of its own, imported when named."""
