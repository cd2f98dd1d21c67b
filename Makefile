# Developer entry points. `make test` is the one command that runs every test.
GO ?= go

.PHONY: build test test-short vet fmt fuzz bench schema generate

# Static binaries, as released: no dynamic loader to start (3 ms less at
# every start); DNS and user lookups use Go's own resolvers.
build:
	CGO_ENABLED=0 $(GO) build -o bin/runnel ./cmd/runnel
	CGO_ENABLED=0 $(GO) build -o bin/runnel-agent ./cmd/runnel-agent

# All tests, with the race detector. They need git and go. .ci/run sets
# RUNNEL_TEST_ALL=1, which will make suites needing outside services
# (PostgreSQL, Docker, Gitea built by .ci/gitea.sh, Chromium) mandatory
# instead of skipped. The end-to-end package
# (cmd/runnel) runs for about ten minutes under the race detector, past go
# test's default 10m timeout on a loaded machine, hence -timeout.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 45m ./...

test-short:
	$(GO) test -short ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Run each fuzz target for a while (the seed corpora run in every `make test`).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/spec/
	$(GO) test -run='^$$' -fuzz=FuzzParseTemplate -fuzztime=$(FUZZTIME) ./internal/expr/
	$(GO) test -run='^$$' -fuzz=FuzzParseCondition -fuzztime=$(FUZZTIME) ./internal/expr/
	$(GO) test -run='^$$' -fuzz=FuzzSplitter -fuzztime=$(FUZZTIME) ./internal/logline/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./internal/api/
	$(GO) test -run='^$$' -fuzz=FuzzRequest -fuzztime=$(FUZZTIME) ./internal/api/
	$(GO) test -run='^$$' -fuzz=FuzzWSRequest -fuzztime=$(FUZZTIME) ./internal/api/
	$(GO) test -run='^$$' -fuzz=FuzzIdentity -fuzztime=$(FUZZTIME) ./internal/sso/
	$(GO) test -run='^$$' -fuzz=FuzzSanitizeLogin -fuzztime=$(FUZZTIME) ./internal/sso/
	$(GO) test -run='^$$' -fuzz=FuzzCheckReturnTo -fuzztime=$(FUZZTIME) ./internal/signin/

# Quick versions of the benchmarks (about two minutes): the CLI against bare
# shell spawns, and the server's start-up, memory at rest and clients waiting
# for their runs on SQLite. docs/benchmarks.md gives the full commands.
bench:
	$(GO) run ./bench/exec -rounds 5
	$(GO) run ./bench/server -only startup,idle,closedloop,sqlite -starts 5 -idle 3s -loop-clients 1,16 -loop-duration 5s

schema:
	$(GO) run ./cmd/runnel schema > docs/pipeline.schema.json

# Regenerate the gRPC code from proto/ (the generated files are committed).
# Needs protoc (Debian: protobuf-compiler); the Go plugins are go.mod tools.
generate:
	PATH="$$($(GO) env GOROOT)/bin:$$PATH" protoc -I proto \
		--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--go_out=. --go_opt=module=github.com/runnel-ci/runnel \
		--go-grpc_out=. --go-grpc_opt=module=github.com/runnel-ci/runnel \
		proto/runnel/agent/v1/agent.proto \
		proto/runnel/stream/v1/stream.proto
