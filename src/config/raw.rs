//! Raw serde mirror of the TOML file (interface.md §2). Filled in by the config work.
