# shardchat: build, run and test.
#
#   make run     serve on :3000 from source
#   make test    install what the tests need (when missing), go vet, go test -race
#   make bench   Go benchmarks, then bench scenarios against a separately started server
#   make build   a static binary in bin/shardchat with version and commit stamped in

GO      ?= go
export PATH := /usr/local/go/bin:$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Programs the tests need, as program=debian-package. `make deps` installs the missing ones
# with apt-get when it runs as root (CI does), and says what to install otherwise.
TEST_DEPS := gcc=gcc chromium=chromium redis-server=redis-server redis-cli=redis-tools nginx=nginx prometheus=prometheus systemd-analyze=systemd node=nodejs npm=npm

.PHONY: build run test deps vet fuzz bench

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/shardchat .

run:
	$(GO) run .

deps:
	@missing=""; \
	for dep in $(TEST_DEPS); do \
	  command -v "$${dep%%=*}" >/dev/null 2>&1 || missing="$$missing $${dep#*=}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else \
	    echo "the tests need:$$missing; install them (apt-get install$$missing) or run make test as root"; exit 1; \
	  fi; \
	fi
	@# The Socket.IO compatibility test drives a stock socket.io-client, pinned in its lock file.
	cd transport/testdata/socketio-client && npm ci --no-audit --no-fund --loglevel=error

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

test: deps vet
	$(GO) test -race ./...

# A short run of every fuzz target; FUZZTIME=5m for a longer one.
FUZZTIME ?= 20s
# Every decoder of outside input has one (client frames, Socket.IO packets, tokens and their
# headers, X-Forwarded-For, Redis channel payloads, pongs, the bench's reader of server
# objects): every Fuzz function of every package runs, so a new one needs no list kept here.
fuzz:
	@for p in $$($(GO) list ./...); do \
	  fs=$$($(GO) test "$$p" -list '^Fuzz') || exit 1; \
	  for f in $$(echo "$$fs" | grep '^Fuzz'); do \
	    echo "== $$p $$f"; \
	    $(GO) test "$$p" -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; \
	  done; \
	done

# The scenarios that make bench runs against a separate server; BENCHMARKS.md gets their tables.
BENCH_SCENARIOS ?= seed burst fanout
bench:
	GO='$(GO)' SCENARIOS='$(BENCH_SCENARIOS)' COMMIT='$(COMMIT)' OUT=BENCHMARKS.md sh bench/run.sh
