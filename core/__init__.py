"""The bottom layer: settings, topic names, metrics, partitioning, the ISO 4217 table, the `t=,v1=` signature
scheme and the messages that cross folders. Nothing here imports another Concord folder; every other folder
may import it."""
