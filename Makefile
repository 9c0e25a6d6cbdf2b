# offshoot — see README.md. Every target that needs the machine set up runs
# scripts/setup first; it is idempotent and takes about a second when
# everything is installed.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
# Packages whose tests also run under the race detector (which switches on
# pebble's invariant checks too); every package runs once without it. The
# end-to-end tests in cmd/offshoot run the server as a separate binary,
# which -race would not instrument anyway.
RACE_PKGS ?= ./storage ./experiments/... ./evals/... ./compute/...
# Tests of experiments whose time is the Go embedder, Postgres (index
# builds, pgbench, GIN) or many compute starts: the race detector makes the
# first kind 4-20x slower (TestCheckpointBeforeFork: 156 s against 7 s) and
# adds nothing on the others, whose service code the remaining tests of the
# package cover under it. They run once, without it, next to the other
# packages; every other test of RACE_PKGS runs under it.
PLAIN_TESTS ?= ^(TestVectorStorageRun|TestVectorStorageIncremental|TestIncrementalMaterialization|TestMaterializations|TestMaterializationLifecycle|TestCheckpointBeforeFork|TestDiskFullSequence|TestDiskFullSequenceLocalWAL|TestLexicalHybrid|TestLexicalIncremental)$$
BIN := bin/offshoot

.PHONY: setup setup-test build run demo test bench bench-scale bench-large lint fmt clean

setup:
	@./scripts/setup

setup-test:
	@./scripts/setup --test

build:
	$(GO) build -o $(BIN) ./cmd/offshoot

# The README's experiment example names ../shared/datasets/cranfield: serve
# that directory's datasets when it exists.
run: setup build
	./$(BIN) serve $(if $(wildcard ../shared/datasets),--datasets-dir ../shared/datasets)

# demo talks to a running server: run `make run` in another shell first.
demo: build
	./$(BIN) demo

# The plain tests of experiments run beside the other packages (a second
# go test, so -run picks them only there); then the race phase.
test: setup-test
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m -run '$(PLAIN_TESTS)' ./experiments & plain=$$!; \
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v -x -F "$$($(GO) list $(RACE_PKGS))"); rc=$$?; \
	wait $$plain && exit $$rc
	$(GO) test -count=1 -race -timeout 30m -skip '$(PLAIN_TESTS)' $(RACE_PKGS)

bench: setup-test build
	./scripts/bench

# The million-chunk run of issue 14 (hours on 2 cores); SCALE_BENCH_DOCS=20000
# make bench-scale runs it at a size that takes minutes.
bench-scale: setup-test
	./scripts/bench-scale

# The large-store run of issue 20 (a 42 GiB store by default; writes that
# much): LARGE_BENCH_GIB=3 make bench-large takes two minutes.
bench-large:
	./scripts/bench-large

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin
