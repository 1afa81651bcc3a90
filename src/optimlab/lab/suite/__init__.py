"""The benchmark suite: every optimizer of the registry tuned under one protocol on the lab's problems."""
