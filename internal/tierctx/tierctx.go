// Package tierctx is what heed's client (package heed) and the server side
// of its cross-tier protocol (package tier) share: the header names and the
// context values by which a tier tells the heed calls it makes that a
// caller above is retrying, and learns that one of them gave up.
package tierctx

import (
	"context"
	"sync/atomic"
)

// The protocol's headers.
const (
	Attempt = "Heed-Attempt"
	Timeout = "Heed-Timeout"
	Retried = "Heed-Retried"
)

// CallKey finds, in a context, the heed retry loop the context belongs to.
// heed keeps its calls under it; a tier serving a retry stores Above.
type CallKey struct{}

// Above marks a context whose caller is already retrying: the heed calls
// made with it make a single attempt each.
type Above struct{}

// State records, for one request a tier serves, whether one of its heed
// calls gave up on a dependency, and why. It is also the request's context
// (its parent's, carrying the State), which saves the middleware an
// allocation per request.
type State struct {
	context.Context
	gaveUp atomic.Pointer[string]
}

// Value answers the State's own key with the State.
func (s *State) Value(key any) any {
	if key == (stateKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// GiveUp records that a heed call gave up, for the reason token.
func (s *State) GiveUp(token string) { s.gaveUp.Store(&token) }

// Reason returns the token of the last give-up, if any.
func (s *State) Reason() (string, bool) {
	if r := s.gaveUp.Load(); r != nil {
		return *r, true
	}
	return "", false
}

type stateKey struct{}

// StateFrom returns the State ctx carries, or nil.
func StateFrom(ctx context.Context) *State {
	s, _ := ctx.Value(stateKey{}).(*State)
	return s
}
