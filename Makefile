# imgfs build, test and CI entry points. `make lint test` is what CI runs.
GO       ?= go

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/imgfs

# Fuzz smoke: empty FUZZ_TARGETS runs every `func FuzzXxx` found; otherwise
# list NAME or PKGDIR:NAME entries (missing ones are skipped with a note).
# FUZZTIME is an execution count (see .ci/fuzz.sh for why not a duration).
FUZZ_TARGETS ?=
FUZZTIME     ?= 20000x

.PHONY: all build test test-unit test-integration fuzz lint bench demo stargz-compare clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/imgfs

# Every test of the module: unit tests of each package, then the
# integration tests (a real registry, FUSE mounts; needs root).
test: test-unit test-integration fuzz

test-unit:
	$(GO) test -count=1 -timeout 10m $$($(GO) list ./... | grep -v '/integration')

test-integration:
	$(GO) test -count=1 -timeout 12m ./integration/...

fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' ./.ci/fuzz.sh $(FUZZ_TARGETS)

lint:
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Go micro-benchmarks of the library packages, then the end-to-end ratios
# of scripts/bench.sh (as root; see docs/PERFORMANCE.md).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./index/... ./fs/ ./fetch/
	scripts/bench.sh

demo: build
	IMGFS=$(BIN) scripts/demo.sh

# imgfs and containerd's stargz-store side by side on one eStargz image:
# requests, bytes, times and memory (scripts/stargz-compare/README.md).
# By hand only, never in CI or `make test`: stargz-store is not packaged,
# so build it first and name it, e.g.
#   make stargz-compare STARGZ_STORE=/path/to/stargz-store
# Needs root, /dev/fuse and docker-registry; about 5 minutes.
stargz-compare:
	GO='$(GO)' STARGZ_STORE='$(STARGZ_STORE)' scripts/stargz-compare/measure.sh

clean:
	rm -rf bin
