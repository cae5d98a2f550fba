//go:build race

package hint_test

const raceEnabled = true
