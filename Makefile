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
BIN := bin/offshoot

.PHONY: setup setup-test build run demo test bench bench-scale lint fmt clean

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

test: setup-test
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v -x -F "$$($(GO) list $(RACE_PKGS))")
	$(GO) test -count=1 -race -timeout 30m $(RACE_PKGS)

bench: setup-test build
	./scripts/bench

# The million-chunk run of issue 14 (hours on 2 cores); SCALE_BENCH_DOCS=20000
# make bench-scale runs it at a size that takes minutes.
bench-scale: setup-test
	./scripts/bench-scale

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin
