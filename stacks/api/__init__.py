"""The stacks JSON API (DESIGN §6.2): events, stacks, history, and the run record's attempts."""
