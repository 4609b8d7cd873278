# The everyday commands. `make run` starts a demo service, `make test` runs
# every test; see README.md.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PREFIX  ?= $(HOME)/.local
GO      ?= go
STATICCHECK ?= $(shell command -v staticcheck || echo $(HOME)/go/bin/staticcheck)

.PHONY: all build run test lint bench fuzz load clean install uninstall

all: lint test build

# The first build compiles every dependency and takes a while: say so.
build:
	@echo "building mixmaster…"
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

# Each fuzz target for FUZZTIME; go test -fuzz takes one target per run.
# Targets are found by name, so a new Fuzz function joins without an edit.
FUZZTIME ?= 10s
fuzz:
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		dir=$$(dirname "$$file"); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			echo "fuzz $$dir $$name"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir/"; \
		done; \
	done

# Mixed webhook, /jobs, dashboard and log-stream traffic against a demo
# service on loopback; fails on any 5xx, a 503 other than the POST /jobs
# backlog's (a refused webhook fails), or too much memory. Its table goes to BENCHMARKS.md.
load: build
	$(GO) run ./cmd/mixmaster-load -bin dist/mixmaster -c 64 -d 60s

clean:
	rm -rf dist .demo

# The binary to $(PREFIX)/bin (default ~/.local/bin: no sudo), with a link
# named mistry for scripts that call `mistry build`. Then `mixmaster setup`
# installs the service. The new binary is renamed into place, so a running
# service keeps its old one until it restarts.
BINDIR = $(DESTDIR)$(PREFIX)/bin

install: build
	install -d '$(BINDIR)'
	install -m 0755 dist/mixmaster '$(BINDIR)/.mixmaster.new'
	mv -f '$(BINDIR)/.mixmaster.new' '$(BINDIR)/mixmaster'
	ln -sfn mixmaster '$(BINDIR)/mistry'
	@echo "Installed $(BINDIR)/mixmaster. Next: mixmaster setup"

# Run `mixmaster setup --teardown` first to stop and remove the service.
uninstall:
	rm -f '$(BINDIR)/mixmaster' '$(BINDIR)/mistry'
	@if [ -e "$${XDG_CONFIG_HOME:-$$HOME/.config}/systemd/user/mixmaster.service" ]; then \
		echo "The service units are still installed: remove them with mixmaster setup --teardown (from a build of this tree: dist/mixmaster setup --teardown)"; fi
