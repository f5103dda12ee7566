"""The drift rules, one module per rule, each exporting `RULE`; `concord.drift.catalog` lists them."""
