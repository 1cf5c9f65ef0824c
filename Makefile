# imgfs build, test and CI entry points. `make lint test` is what CI runs.
GO       ?= go
export PATH := /usr/local/go/bin:$(PATH)

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/imgfs

# Unit-tested packages: those that exist yet (a package without Go files would fail go test).
UNIT_PKGS ?= $(foreach d,manifest fetch index fs,$(if $(wildcard $(d)/*.go),./$(d)/...)) \
             $(if $(wildcard cmd/*/*.go),./cmd/...)
BENCH_PKGS ?= $(foreach d,index fs fetch,$(if $(wildcard $(d)/*_test.go),./$(d)/))

# Fuzz smoke: empty FUZZ_TARGETS runs every `func FuzzXxx` found; otherwise
# list NAME or PKGDIR:NAME entries (missing ones are skipped with a note).
FUZZ_TARGETS ?=
FUZZTIME     ?= 20000x

.PHONY: all build test test-unit test-integration fuzz lint bench demo clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/imgfs

test: test-unit test-integration fuzz

test-unit:
	$(GO) test -count=1 -timeout 10m $(UNIT_PKGS)

test-integration:
	$(GO) test ./integration/ -count=1 -timeout 12m

fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' ./.ci/fuzz.sh $(FUZZ_TARGETS)

lint:
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(BENCH_PKGS)
	@if [ -x scripts/bench.sh ]; then scripts/bench.sh; else echo "bench: scripts/bench.sh not present, skipped"; fi

demo: build
	IMGFS=$(BIN) scripts/demo.sh

clean:
	rm -rf bin
