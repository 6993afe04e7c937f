# Habits in one place. CI runs .ci/run, which calls the same commands.
.PHONY: fmt lint test ci bench serve

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test:
	cargo test --workspace

ci:
	bash .ci/run

serve:
	cargo run --release -- serve

# Single-order intake vs the ceiling, and batch intake; needs wrk (apt-get install wrk).
bench:
	cargo build --release
	scripts/bench/intake.sh 20s 128
