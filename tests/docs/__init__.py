"""Doc tests: every command and marked program in docs/, README.md and examples/*/README.md runs."""
