//go:build race

package heed_test

// raceEnabled says the race detector is on: it makes sync.Pool drop items
// at random, so allocation counts are not what they are in production.
const raceEnabled = true
