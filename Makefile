# Two commands a newcomer needs: `make demo` and `make test`.
GO        ?= go
BIN       ?= bin
GOTESTFLAGS ?=
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test bench generate check-generate lint demo clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/... ./tools/...

# Tests need root for namespaces, XDP, AF_XDP and io_uring; CI runs as root.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m $(GOTESTFLAGS) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# Regenerates bpf2go objects and flatc output. Needs clang/llvm and flatbuffers-compiler.
generate:
	$(GO) generate ./...

# Fails when committed generated code differs from its source.
check-generate: generate
	git diff --exit-code -- bpf proto feed/itch

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

demo: build
	$(BIN)/feedhandler demo

clean:
	rm -rf $(BIN)
