package throttle

import "time"

// line is a pacer's schedule: each request takes a numbered place, and
// each place's turn comes one interval after the turn of the place before
// it. Unlike a reservation, a place's turn is reckoned anew at every look,
// at the interval of the moment: when the pace rises, the places already
// waiting move up, and a request queued behind a slow pace is not held to
// it once the server shows room.
//
// The turn of place k >= first is prev + (k-first+1)*interval; places
// below first are due. A line is not safe for concurrent use: the Pacer
// holds its lock.
type line struct {
	interval time.Duration
	prev     time.Time // the turn of place first-1
	first    uint64    // the first place reckoned from prev
	next     uint64    // the next place to hand out

	// Since a restart at origin and until the first turn comes, that turn
	// is (1+phase) intervals after origin, at the interval of the moment.
	origin time.Time
	phase  float64
}

// turn is when place k may go.
func (l *line) turn(k uint64) time.Time {
	if k < l.first {
		return l.prev
	}
	return l.prev.Add(time.Duration(k-l.first+1) * l.interval)
}

// take hands out the next place to a request ready at now and returns its
// turn. A line that has run idle gives the turn now, with no burst: the
// place after it comes one interval later.
func (l *line) take(now time.Time) (uint64, time.Time) {
	k := l.next
	at := l.turn(k)
	if at.Before(now) {
		l.prev, l.first, at = now.Add(-l.interval), k, now
	}
	l.next++
	return k, at
}

// leave gives place k back. The last place handed out is taken back whole;
// a place in the middle leaves a gap of one interval, which the places
// behind it keep (moving them up would let the ones ahead burst).
func (l *line) leave(k uint64) {
	if k+1 == l.next && k >= l.first {
		l.next--
	}
}

// waiting is the first place whose turn is after now.
func (l *line) waiting(now time.Time) uint64 {
	if !now.After(l.prev) || l.interval <= 0 {
		return l.first
	}
	// turn(first+n) > now  <=>  n+1 > (now-prev)/interval
	n := uint64(now.Sub(l.prev) / l.interval)
	return min(l.first+n, l.next)
}

// setInterval changes the pace at now. The places whose turn has come keep
// it; the first still waiting gets its turn one new interval after the
// last turn that came, or now if that has passed already, and the rest
// follow at the new interval. Before the first turn after a restart, that
// turn stays (1+phase) intervals after the restart, at the new interval.
func (l *line) setInterval(now time.Time, d time.Duration) {
	if !l.origin.IsZero() {
		if now.Before(l.turn(l.first)) {
			l.interval = d
			l.prev = l.origin.Add(time.Duration(l.phase * float64(d)))
			return
		}
		l.origin = time.Time{}
	}
	h := l.waiting(now)
	last := l.prev
	if h > l.first {
		last = l.turn(h - 1)
	}
	l.prev, l.first, l.interval = last, h, d
	if l.prev.Add(d).Before(now) {
		l.prev = now.Add(-d)
	}
}

// restart starts the line anew at now with interval d: the next place's
// turn comes (1+phase) intervals later. A line restarts only while no
// place waits (a pacer that is not pacing hands out none).
func (l *line) restart(now time.Time, d time.Duration, phase float64) {
	l.interval, l.first = d, l.next
	l.origin, l.phase = now, phase
	l.prev = now.Add(time.Duration(phase * float64(d)))
}

// holdUntil moves the places waiting at now so that none goes before t:
// the first of them goes at t at the earliest, the rest one interval
// apart after it.
func (l *line) holdUntil(now, t time.Time) {
	l.origin = time.Time{}
	h := l.waiting(now)
	last := l.prev
	if h > l.first {
		last = l.turn(h - 1)
	}
	if hold := t.Add(-l.interval); hold.After(last) {
		last = hold
	}
	l.prev, l.first = last, h
}

// goNow gives the first place waiting at now its turn now; the rest follow
// it at the interval.
func (l *line) goNow(now time.Time) {
	l.origin = time.Time{}
	if h := l.waiting(now); l.turn(h).After(now) {
		l.prev, l.first = now.Add(-l.interval), h
	}
}

// delay moves every turn still to come by d.
func (l *line) delay(d time.Duration) {
	l.prev = l.prev.Add(d)
	if !l.origin.IsZero() {
		l.origin = l.origin.Add(d)
	}
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
