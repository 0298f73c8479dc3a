"""Your own models: vetted by the code that will run them, copied into the data dir, pinned in the
local manifest."""
