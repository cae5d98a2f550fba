package ratelimit

import (
	"context"
	"time"
)

// MaxWindows is the most windows one limit may have. A [Decision] holds the
// state of every window in an array, so that it is returned without an
// allocation; four (a second, a minute, an hour and a day) is the most
// real APIs publish, and eight leaves room.
const MaxWindows = 8

// Store keeps the limit state of every key. [MemoryStore] is the default,
// for one process; a store kept in Redis (heedredis) makes the limit hold
// for a whole fleet.
//
// Take decides one request of key at now against windows, all at once and
// atomically: the request is admitted only if every window admits it, and
// it then takes one unit from each. A refused request takes nothing from
// any window, but when spread.Step is positive it is given a return slot
// (Decision.RetryAt) on the key's schedule of promises, which later
// refusals queue behind (see [Spread]).
//
// When spread.Delay is positive, a request that does not conform at now
// but would at some instant at most Delay later is not refused: it is
// admitted at that instant, Decision.AdmitAt, and takes its unit from
// every window as a request admitted then would, so that later requests
// queue behind it. The caller holds it until AdmitAt. A store that
// ignores Delay (leaving AdmitAt zero) refuses such requests, as without
// Delay.
//
// windows are the [Limiter]'s, the same slice on every call, which Take
// must not modify; a store needs no other configuration. Implementations must be safe for concurrent use
// and should be quick: the middleware calls Take on every request that is
// not exempt. An error makes the middleware admit the request (it fails
// open) and report the error in its [heed.EventAdmitted].
type Store interface {
	Take(ctx context.Context, key string, now time.Time, windows []Window, spread Spread) (Decision, error)
}

// Spread tells a [Store] where a refused request's return slot may fall,
// and (Delay) how far ahead a request may be admitted at a reserved slot
// instead of refused.
// The zero Spread keeps no promises: a refusal's RetryAt is the earliest
// time the request would conform.
//
// Otherwise the store keeps, per key and window, a schedule of promised
// slots, a second GCRA layered over the real one: a refusal is promised
// the earliest instant that both the windows and the promises before it
// leave room for, and the next refusal queues one emission interval
// (Per/Limit) behind it. Slots fall on the grid now + k*Step, or up to
// Hold past a grid point. Promises take nothing from the windows
// themselves: a newcomer may still be admitted ahead of a promised
// client. They expire by themselves once their time has passed.
type Spread struct {
	// Step is the resolution of the slots, relative to the refusal's time:
	// a second, since Retry-After counts whole seconds. Zero keeps no
	// promises.
	Step time.Duration
	// Hold is how far past a grid point a slot may fall: the longest the
	// middleware may hold a refusal back so that Retry-After, counted
	// from the moment the 429 is written, lands on the slot. Zero puts
	// every slot on the grid; Step or more lets slots fall anywhere.
	Hold time.Duration
	// Horizon bounds the schedule: no promise lies more than Horizon past
	// the earliest time the request would conform. A refusal that would be
	// promised later is told the horizon and not recorded, so that
	// clients that ignore Retry-After and hammer cannot push the schedule
	// of their key ever further out.
	Horizon time.Duration
	// Delay, when positive, admits a request that would conform within
	// Delay of now by reserving its slot (see Decision.AdmitAt) instead of
	// refusing it. Zero refuses every request that does not conform now.
	Delay time.Duration
}

// Decision is a [Store]'s answer for one request.
type Decision struct {
	// Allowed says the request was admitted; it took one unit from every
	// window.
	Allowed bool
	// AdmitAt is, for a request admitted by reservation (Spread.Delay),
	// the time its slot comes, after now: it took its unit as at AdmitAt,
	// and must not be served before. Zero when admitted at once or
	// refused.
	AdmitAt time.Time
	// ConformAt is, for a refused request, the earliest time it would
	// have been admitted had nothing else come first; zero when admitted.
	ConformAt time.Time
	// RetryAt is, for a refused request, when it was told to come back:
	// its slot on the key's schedule of promises, never before ConformAt
	// (ConformAt itself under the zero Spread); zero when admitted.
	RetryAt time.Time
	// N is how many windows States holds, in the order of the windows
	// given to Take.
	N int
	// States holds each window's state just after the decision: as at
	// AdmitAt for a request admitted by reservation, when its response
	// goes out.
	States [MaxWindows]WindowState
}

// Windows returns the windows' states, States[:N].
func (d *Decision) Windows() []WindowState { return d.States[:d.N] }

// WindowState is one window's quota just after a decision, as the IETF
// RateLimit field reports it.
type WindowState struct {
	// Remaining is how many more requests the window would admit at once
	// (after this one, if it was admitted): the tokens in its bucket, at
	// most its Burst.
	Remaining int64
	// Reset is how long until the window is full again (Remaining back at
	// Burst); zero when it is full.
	Reset time.Duration
}
