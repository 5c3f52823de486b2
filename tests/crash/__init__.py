"""Crash tests of the store: SIGKILLed writers and damaged CommitLog tails, then recovery."""
