# fleet's everyday recipes. `just --list` shows them.

# Run the whole story on the embedded default: server, 12 agents, dashboard.
demo *ARGS:
    go run ./cmd/fleet demo {{ARGS}}

# The test suite, as CI runs it.
test:
    go test ./...

# The quick loop: skips the slow end-to-end runs.
test-short:
    go test -short ./...

# Race detector on the concurrent packages.
race:
    go test -race -short ./events/... ./fsm/... ./agent/... ./projections/... ./replay/...

# Every benchmark behind BENCHMARKS.md (takes a few minutes).
bench:
    go test -run '^$' -bench . -benchtime 20000x ./events/...
    go test -run '^$' -bench . ./agent/... ./projections/... ./replay/...

# Each fuzz target for a while (FUZZTIME=1m just fuzz).
fuzz:
    FUZZTIME="${FUZZTIME:-30s}" bash -c 'grep -rl --include="*_test.go" "^func Fuzz" . | while read -r f; do for t in $(grep -o "^func Fuzz[A-Za-z0-9_]*" "$f" | sed "s/^func //"); do go test "./$(dirname "$f")" -run "^$" -fuzz "^$t\$" -fuzztime "$FUZZTIME" || exit 1; done; done'

# Formatting and vet.
lint:
    test -z "$(gofmt -l $(git ls-files '*.go'))" || (gofmt -l $(git ls-files '*.go'); exit 1)
    go vet ./...

# The binaries: fleet, and the slim agent for arm64 devices.
build:
    go build -o fleet ./cmd/fleet
    GOOS=linux GOARCH=arm64 go build -trimpath -ldflags="-s -w" -o fleet-agent ./cmd/fleet-agent

# Everything CI does.
ci:
    bash .ci/run

# Every binary for every device target, with version and revision, into dist/.
release:
    bash .ci/release
