// Package bench measures heed side by side with its peers
// (go-retryablehttp, failsafe-go) in one run. It is a module of its own so
// the peers never enter heed's go.mod. The results and the commands that
// reproduce them are in ../docs/benchmarks.md.
//
// Its tests also hold the checks whose dependencies are too heavy for the
// modules they check: promassets_test.go parses heedprom's alerting rules
// and dashboard (docs/observability) with Prometheus's own parsers, which
// would otherwise put github.com/prometheus/prometheus in the module graph
// of every heedprom user.
package bench
