# The two entry points of the README. Everything real lives in scripts/.
.PHONY: demo test bench cluster-up cluster-down

demo:
	scripts/demo

test:
	scripts/test

bench:
	scripts/bench

cluster-up:
	testenv/cluster up

cluster-down:
	testenv/cluster down
