# The everyday commands. `make run` starts a demo service, `make test` runs
# every test; see README.md.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PREFIX  ?= $(HOME)/.local
GO      ?= go
STATICCHECK ?= $(shell command -v staticcheck || echo $(HOME)/go/bin/staticcheck)

.PHONY: all build run test lint bench fuzz clean

all: lint test build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/mixmaster ./cmd/mixmaster

# A demo service on http://127.0.0.1:8585 with example projects; no config
# and no Docker needed. Its state lives in .demo/.
run: build
	./dist/mixmaster serve --demo --build-root .demo

test:
	$(GO) test -race -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Benchmarks; their results are recorded in BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

clean:
	rm -rf dist .demo
