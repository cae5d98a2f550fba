package heed

import (
	"slices"
	"strings"

	"github.com/heed-go/heed/breaker"
)

// KeyStats is a snapshot of the state heed keeps for one key, for metrics
// and debugging.
type KeyStats struct {
	// Key is the key: the host by default; "(other)" for the state that
	// keys past WithMaxKeys share.
	Key string
	// Breaker is the circuit breaker's state; HasBreaker is false when
	// breakers are off.
	Breaker    breaker.State
	HasBreaker bool
	// InFlight and Queued count the requests holding and waiting for a
	// slot of the key's concurrency limit (both zero without one).
	InFlight, Queued int
	// Pacing is true while the adaptive pacer holds the key to PaceRate
	// requests per second.
	Pacing   bool
	PaceRate float64
}

// Stats returns a snapshot of every key's state, ordered by key. It reads
// the state without stopping the traffic: each key is consistent with
// itself, not with the others.
func (p *Policy) Stats() []KeyStats {
	r := p.keys
	if r == nil {
		return nil // a zero Policy keeps no state
	}
	m := *r.m.Load()
	out := make([]KeyStats, 0, len(m)+1)
	for _, ks := range m {
		out = append(out, ks.stats())
	}
	r.mu.Lock()
	overflow := r.overflow
	r.mu.Unlock()
	if overflow != nil {
		out = append(out, overflow.stats())
	}
	slices.SortFunc(out, func(a, b KeyStats) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func (ks *keyState) stats() KeyStats {
	s := KeyStats{Key: ks.key}
	if ks.breaker != nil {
		s.Breaker, s.HasBreaker = ks.breaker.State(), true
	}
	t := &ks.throttle
	if t.bulkhead != nil {
		s.InFlight, s.Queued = t.bulkhead.InUse()
	}
	if t.pacing() {
		s.Pacing = true
		s.PaceRate, _ = t.pacer.Rate()
	}
	return s
}
