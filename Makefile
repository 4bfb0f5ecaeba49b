# Two commands a newcomer needs: `make demo` and `make test`.
GO        ?= go
BIN       ?= bin
GOTESTFLAGS ?=
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test bench generate check-generate lint demo clean pgo setup-test setup-demo

all: build

# CGO_ENABLED=0: a pure-Go binary can drop its capabilities on every thread
# after setup (syscall.AllThreadsSyscall refuses when cgo is linked; see
# docs/OPERATIONS.md).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/... ./tools/...

# Installs the system tools each target uses (only the missing ones; the
# list of Debian packages is in .ci/setup, which CI uses too).
setup-test:
	./.ci/setup test

setup-demo:
	./.ci/setup demo

# The race detector (go test -race, which also has checkptr check every
# unsafe conversion) runs over every package but RACE_SKIP, whose tests do
# not stand its slowdown within CI's budget (go test -race -count=1, one
# package at a time, on the 2-CPU VM at load 6-12, against the plain run
# in CI): cmd/feedhandler runs its race-built binary again for most tests
# (680 s against 68 s; its in-process tests of the replay's unsafe loads,
# RACE_CMD_RUN, do run), internal/demo's labs send a day at a fixed rate
# that the race-built handler does not keep up with (1188 s against 170 s,
# 'handler did not finish in 1m0s'), proto/python's tests are Python's,
# and deploy has no concurrency of its own (systemd-analyze). The sharded
# mode's rings and atomics are feed/handler's (576 s against 208 s) and
# internal/spsc's.
RACE_SKIP    ?= cmd/feedhandler|internal/demo|proto/python|deploy
# The tests that count allocations run there too: each counts through
# internal/race's AllocsPerRun, which asserts nothing of a race-built
# count (the race detector's sync.Pool drops a share of what is put, so
# zerolog's events and fmt's buffers allocate now and then and a count of
# 0 fails by chance: 'an interface gone and back, logged, allocates 1
# times', TestLineWatchLogsAllocateNothing, in a clean-clone CI run) and
# logs it; the plain run above asserts every count, and internal/race's
# TestEveryAllocationCountKnowsTheRaceBuild fails on a count that does not
# go through it.
RACE_CMD_RUN ?= TestApplyFile

# Tests need root for namespaces, XDP, AF_XDP and io_uring; CI runs as root.
test: setup-test
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m $(GOTESTFLAGS) ./...
	$(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) $$($(GO) list ./... | grep -vE '/($(RACE_SKIP))$$')
	$(GO) test -race -count=1 -timeout 10m -run '$(RACE_CMD_RUN)' $(GOTESTFLAGS) ./cmd/feedhandler

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# Regenerates bpf2go objects and flatc output. Needs clang/llvm and flatbuffers-compiler.
generate:
	$(GO) generate ./...

# Fails when committed generated code differs from its source, or when
# generating wrote a file git does not track (new output never committed).
check-generate: generate
	git diff --exit-code -- bpf proto feed/itch
	@new=$$(git ls-files --others --exclude-standard -- bpf proto feed/itch); \
	if [ -n "$$new" ]; then echo "check-generate: generated, not committed:" $$new >&2; exit 1; fi

# Regenerates cmd/feedhandler/default.pgo, the profile that every `go build`
# of the command uses for profile-guided optimization (inlining and layout of
# the replay/apply path), from `feedhandler replay` of a generated 5 M message
# day. Rerun after changing book, feed/itch or the replay loop.
pgo:
	$(GO) build -pgo=off -o $(BIN)/feedhandler-nopgo ./cmd/feedhandler
	$(GO) run ./tools/itchgen -n 5000000 -seed 1 -o $(BIN)/pgo-day.itch
	for i in 1 2 3 4 5 6 7 8; do $(BIN)/feedhandler-nopgo replay --quiet --cpuprofile $(BIN)/pgo-$$i.prof $(BIN)/pgo-day.itch >/dev/null || exit 1; done
	$(GO) tool pprof -proto $(BIN)/pgo-*.prof > cmd/feedhandler/default.pgo
	rm -f $(BIN)/pgo-*.prof $(BIN)/pgo-day.itch $(BIN)/feedhandler-nopgo

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

demo: setup-demo build
	$(BIN)/feedhandler demo

clean:
	rm -rf $(BIN)
