// Package bench measures heed side by side with its peers
// (go-retryablehttp, failsafe-go) in one run. It is a module of its own so
// the peers never enter heed's go.mod. The results and the commands that
// reproduce them are in ../docs/benchmarks.md.
package bench
