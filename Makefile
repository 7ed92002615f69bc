# The two entry points of the README. Everything real lives in scripts/.
.PHONY: demo test bench dist cluster-up cluster-down

demo:
	scripts/demo

test:
	scripts/test

bench:
	scripts/bench

# The static binary, the krew archive and manifest, the OCI image archive (dist/).
dist:
	scripts/dist

cluster-up:
	testenv/cluster up

cluster-down:
	testenv/cluster down
