"""Doc tests: every command and marked program in docs/ and README.md runs."""
