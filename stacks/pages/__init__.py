"""The stack pages: dashboard, stack page (with its run record), new stack, removed stacks, triage."""
