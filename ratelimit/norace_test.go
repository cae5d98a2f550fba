//go:build !race

package ratelimit_test

// raceEnabled says the race detector is on, which changes allocation
// counts and slows the hot path many times over.
const raceEnabled = false
