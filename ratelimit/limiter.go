package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/internal/redact"
)

// DefaultMaxHold is the longest a refusal is held back by default when
// Config.HoldRefusals is set: a second, the resolution of Retry-After,
// which is all holding needs to make up.
const DefaultMaxHold = time.Second

// maxHeld bounds the refusals held back at once. Each holds its goroutine
// and connection; past the bound, a refusal is answered at once with its
// Retry-After rounded up, so that its client comes back a little after
// its slot instead of exactly on it.
const maxHeld = 10000

// DefaultMaxWaiting is the default bound of Config.MaxWaiting: the most
// requests held back at once, waiting for their reserved slot.
const DefaultMaxWaiting = 10000

// Config configures a [Limiter]. Only Windows is required.
type Config struct {
	// Windows are the limits, all enforced at once: a request is admitted
	// only if every window admits it, and a refused request takes nothing
	// from any. At most MaxWindows, with distinct names.
	Windows []Window

	// Key gives the client key each window counts for (ByRemoteAddr() by
	// default; see also ByHeader). Keys never leave the limiter: events
	// carry Class.
	Key func(*http.Request) string
	// Class gives a request's class, the bounded label events carry as
	// their Key ("default" by default): a plan or tier, say, never the
	// client key itself, which would make a metric label per client. It
	// is called only when there are Hooks.
	Class func(key string, r *http.Request) string
	// Exempt, if set, lets the requests it accepts through untouched: no
	// quota taken, no fields written, no events (health checks, say).
	Exempt func(*http.Request) bool

	// Store keeps the limit state; a MemoryStore of MaxKeys keys by
	// default. A shared store (heedredis) makes the limit a fleet's.
	Store Store
	// MaxKeys bounds the default MemoryStore (DefaultMaxKeys when 0); see
	// MemoryStore for what happens when it is reached. Set the bound on
	// the store itself when Store is set.
	MaxKeys int

	// Clock tells the time and times held refusals; clock.Real() by
	// default.
	Clock clock.Clock
	// Hooks receive an heed.EventAdmitted or heed.EventLimited per request
	// that is not exempt, on the request's goroutine. Without hooks
	// nothing is built.
	Hooks []heed.Hook

	// LegacyHeaders adds X-RateLimit-Limit, -Remaining and -Reset (seconds
	// from now) for the most constraining window, for clients that read
	// only those.
	LegacyHeaders bool

	// NoSpread turns the spreading of refusals off: every refusal is told
	// the earliest time it would conform, rounded up to whole seconds, so
	// clients refused together come back together. For comparison only.
	NoSpread bool
	// HoldRefusals holds a refusal back, by at most MaxHold, before
	// writing it, so that Retry-After counted from the moment the client
	// receives it lands exactly on its return slot instead of on a whole
	// second: slots a burst apart fill the second instead of one burst per
	// second. The cost is a goroutine and a connection held per refusal,
	// for under MaxHold (at most 10,000 at once; past that, refusals are
	// answered at once).
	HoldRefusals bool
	// MaxHold bounds the hold, from 1 ms to 1 s (DefaultMaxHold when 0).
	// Below a second, slots fall only where the hold can reach them.
	MaxHold time.Duration
	// MaxDelay turns on the delay mode, as nginx's limit_req with a burst
	// queue: a request that does not conform now but would within
	// MaxDelay is not refused. Its slot is reserved at once (the bucket
	// advances as for an admitted request, so later requests queue behind
	// it), the request waits until the slot comes (its goroutine and
	// connection held), and is then served with the quota fields as at
	// its slot. A request whose slot lies further out is refused as
	// without MaxDelay. If its client gives up while waiting, the request
	// is dropped with nothing written, and its slot is not given back
	// (later requests may already be queued behind it): the limit loses
	// that one slot of capacity, never admits more than it allows. Zero
	// (the default) refuses every request that does not conform now. It
	// should stay well below the server's WriteTimeout and the clients'
	// timeouts.
	MaxDelay time.Duration
	// MaxWaiting bounds the requests waiting for their slot at once
	// (DefaultMaxWaiting when 0): once that many wait, a request that does
	// not conform is refused as without MaxDelay. The count is checked
	// before the store is asked, so requests decided in the same instant
	// may each take the last place: the bound may be passed by as many
	// requests as are being decided at that moment.
	MaxWaiting int
	// SpreadHorizon bounds how far the schedule of promised slots reaches
	// past the earliest time a request would conform (by default a minute,
	// or ten intervals of the slowest window if longer); see Spread.
	SpreadHorizon time.Duration

	// OnLimited writes a refusal: the status (429 is expected) and the
	// body. Retry-After and the quota fields are already set. WriteProblem
	// by default.
	OnLimited func(w http.ResponseWriter, r *http.Request, ref Refusal)
}

// Refusal describes a refused request to Config.OnLimited.
type Refusal struct {
	// RetryAfter is the value of the Retry-After field: whole seconds.
	RetryAfter time.Duration
	// RetryAt is the return slot the client was promised.
	RetryAt time.Time
	// Wait is the time from now, as the refusal is written, to RetryAt:
	// RetryAfter exactly when the slot is on a whole second or the refusal
	// was held, less when Retry-After was rounded up.
	Wait time.Duration
	// Window is the most constraining window, the one RateLimit reports.
	Window Window
	// Decision is the store's.
	Decision Decision
}

// Limiter is rate-limiting middleware (see the package documentation):
// build it with [New] and put it in front of handlers with
// [Limiter.Handler]. One Limiter is one limit, whatever the handlers it
// wraps: they share its keys' quota. It is safe for concurrent use.
type Limiter struct {
	windows   []Window
	store     Store
	mem       *MemoryStore // the store, when it is the default one: called directly
	clock     clock.Clock
	key       func(*http.Request) string
	class     func(string, *http.Request) string
	exempt    func(*http.Request) bool
	hooks     []heed.Hook
	onLimited func(http.ResponseWriter, *http.Request, Refusal)
	spread    Spread
	hold      bool
	legacy    bool
	held      atomic.Int64

	maxWaiting int64
	waiting    atomic.Int64 // requests waiting for their reserved slot

	policy   string   // the RateLimit-Policy value
	prefixes []string // per window: the RateLimit value up to r's digits
	limits   []string // per window: Limit in decimal, for X-RateLimit-Limit
}

// New returns a Limiter for cfg, or an error naming every field that
// cannot work.
func New(cfg Config) (*Limiter, error) {
	var bad []string
	switch {
	case len(cfg.Windows) == 0:
		bad = append(bad, "Windows: at least one window is needed")
	case len(cfg.Windows) > MaxWindows:
		bad = append(bad, fmt.Sprintf("Windows: %d windows, at most %d", len(cfg.Windows), MaxWindows))
	}
	windows := make([]Window, len(cfg.Windows))
	names := make(map[string]int, len(cfg.Windows))
	for i, w := range cfg.Windows {
		field := fmt.Sprintf("Windows[%d]", i)
		problems := w.check(field)
		bad = append(bad, problems...)
		if w.Name == "" {
			w.Name = "default"
			if len(cfg.Windows) > 1 {
				w.Name = perName(w.Per)
			}
		}
		if j, dup := names[w.Name]; dup {
			bad = append(bad, fmt.Sprintf("%s.Name: %q is the name of Windows[%d] too (name windows of the same Per)", field, w.Name, j))
		}
		names[w.Name] = i
		if len(problems) == 0 {
			w.interval = w.Interval()
			w.tolerance = time.Duration(w.Burst-1) * w.interval
		}
		windows[i] = w
	}
	if cfg.MaxKeys < 0 {
		bad = append(bad, fmt.Sprintf("MaxKeys: %d must not be negative (0 for the default)", cfg.MaxKeys))
	}
	if cfg.MaxKeys != 0 && cfg.Store != nil {
		bad = append(bad, "MaxKeys: set with Store; bound the Store itself")
	}
	switch {
	case cfg.MaxHold != 0 && !cfg.HoldRefusals:
		bad = append(bad, "MaxHold: set without HoldRefusals")
	case cfg.MaxHold < 0 || cfg.MaxHold > time.Second || cfg.MaxHold > 0 && cfg.MaxHold < time.Millisecond:
		bad = append(bad, fmt.Sprintf("MaxHold: %v must be from 1ms to 1s (0 for the default)", cfg.MaxHold))
	}
	if cfg.HoldRefusals && cfg.NoSpread {
		bad = append(bad, "HoldRefusals: set with NoSpread; holding lands clients on slots NoSpread does not keep")
	}
	if cfg.MaxDelay < 0 {
		bad = append(bad, fmt.Sprintf("MaxDelay: %v must not be negative (0 for off)", cfg.MaxDelay))
	}
	switch {
	case cfg.MaxWaiting != 0 && cfg.MaxDelay == 0:
		bad = append(bad, "MaxWaiting: set without MaxDelay")
	case cfg.MaxWaiting < 0:
		bad = append(bad, fmt.Sprintf("MaxWaiting: %d must not be negative (0 for the default)", cfg.MaxWaiting))
	}
	if cfg.SpreadHorizon < 0 {
		bad = append(bad, fmt.Sprintf("SpreadHorizon: %v must not be negative (0 for the default)", cfg.SpreadHorizon))
	}
	for i, h := range cfg.Hooks {
		if h == nil {
			bad = append(bad, fmt.Sprintf("Hooks[%d]: nil", i))
		}
	}
	if len(bad) > 0 {
		return nil, errors.New("ratelimit: " + strings.Join(bad, "; "))
	}

	l := &Limiter{
		windows:   windows,
		store:     cfg.Store,
		clock:     cfg.Clock,
		key:       cfg.Key,
		class:     cfg.Class,
		exempt:    cfg.Exempt,
		hooks:     append([]heed.Hook(nil), cfg.Hooks...),
		onLimited: cfg.OnLimited,
		hold:      cfg.HoldRefusals,
		legacy:    cfg.LegacyHeaders,
	}
	if l.store == nil {
		l.mem = NewMemoryStore(cfg.MaxKeys)
		l.store = l.mem
	}
	if l.clock == nil {
		l.clock = clock.Real()
	}
	if l.key == nil {
		l.key = ByRemoteAddr()
	}
	if l.class == nil {
		l.class = func(string, *http.Request) string { return "default" }
	}
	if l.onLimited == nil {
		l.onLimited = WriteProblem
	}
	if !cfg.NoSpread {
		l.spread.Step = time.Second
		if cfg.HoldRefusals {
			l.spread.Hold = cmp(cfg.MaxHold, DefaultMaxHold)
		}
		horizon := time.Minute
		for i := range windows {
			horizon = max(horizon, 10*windows[i].interval)
		}
		l.spread.Horizon = cmp(cfg.SpreadHorizon, horizon)
	}
	l.spread.Delay = cfg.MaxDelay
	l.maxWaiting = int64(cfg.MaxWaiting)
	if l.maxWaiting == 0 {
		l.maxWaiting = DefaultMaxWaiting
	}

	// RateLimit-Policy never changes; RateLimit changes only in r and t.
	var pol []string
	for _, w := range windows {
		name := `"` + w.Name + `"`
		pol = append(pol, name+";q="+strconv.FormatInt(w.Limit, 10)+";w="+strconv.FormatInt(int64(w.Per/time.Second), 10))
		l.prefixes = append(l.prefixes, name+";r=")
		l.limits = append(l.limits, strconv.FormatInt(w.Limit, 10))
	}
	l.policy = strings.Join(pol, ", ")
	return l, nil
}

// cmp returns v, or def when v is zero.
func cmp(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Handler returns next behind the limiter. Its signature is that of the
// usual middleware (chi's Use, say).
func (l *Limiter) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serve(w, r, next)
	})
}

func (l *Limiter) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if l.exempt != nil && l.exempt(r) {
		next.ServeHTTP(w, r)
		return
	}
	key := l.key(r)
	now := l.clock.Now()
	var (
		d   Decision
		err error
	)
	spread := l.spread
	if spread.Delay > 0 && l.waiting.Load() >= l.maxWaiting {
		spread.Delay = 0 // no room to wait: refuse as without MaxDelay
	}
	if l.mem != nil {
		d, err = l.mem.take(key, now, l.windows, spread)
	} else {
		d, err = l.store.Take(r.Context(), key, now, l.windows, spread)
	}
	if err != nil {
		// Fail open: a store that is down must not take the API down with
		// it. The hooks hear of it.
		if len(l.hooks) > 0 {
			l.emit(r, key, heed.Event{Kind: heed.EventAdmitted, Time: now, Err: err})
		}
		next.ServeHTTP(w, r)
		return
	}
	i := constraining(&d, len(l.windows))
	l.setQuota(w.Header(), &d, i)
	if d.Allowed {
		if !d.AdmitAt.IsZero() {
			l.delay(w, r, next, key, now, d.AdmitAt.Sub(now))
			return
		}
		if len(l.hooks) > 0 {
			l.emit(r, key, heed.Event{Kind: heed.EventAdmitted, Time: now})
		}
		next.ServeHTTP(w, r)
		return
	}
	l.refuse(w, r, key, now, &d, i)
}

// delay serves a request admitted by reservation once its slot, wait from
// now, has come. Its event is emitted at once, with the wait: the slot is
// taken whatever the client does. A client gone before the slot leaves
// with nothing written, and the slot is not given back: later requests
// may already be queued behind it, and taking it out from under them
// would need the store to undo a decision it has built on.
func (l *Limiter) delay(w http.ResponseWriter, r *http.Request, next http.Handler, key string, now time.Time, wait time.Duration) {
	l.waiting.Add(1)
	if len(l.hooks) > 0 {
		l.emit(r, key, heed.Event{Kind: heed.EventAdmitted, Time: now, Wait: wait})
	}
	t := l.clock.NewTimer(wait)
	select {
	case <-t.C():
	case <-r.Context().Done():
		t.Stop()
		l.waiting.Add(-1)
		return // the client is gone
	}
	l.waiting.Add(-1)
	next.ServeHTTP(w, r)
}

// constraining returns the window that holds the client back most, the
// one RateLimit reports: the fewest remaining, then the latest reset (the
// rule by which heed's hint package picks among several).
func constraining(d *Decision, windows int) int {
	best := 0
	for i := 1; i < min(d.N, windows); i++ {
		s, b := &d.States[i], &d.States[best]
		if s.Remaining < b.Remaining || s.Remaining == b.Remaining && s.Reset > b.Reset {
			best = i
		}
	}
	return best
}

// refuse tells a refused request when to come back: it holds the refusal
// when that lands the client on its slot, sets Retry-After and lets
// OnLimited write the rest.
func (l *Limiter) refuse(w http.ResponseWriter, r *http.Request, key string, now time.Time, d *Decision, i int) {
	wait := d.RetryAt.Sub(now)
	retryAfter := ceilSeconds(wait)
	var hold time.Duration
	if l.hold {
		// The slot lies within the hold of a whole second from now (the
		// store put it there): hold the refusal by the fraction, and tell
		// the whole seconds that remain.
		whole := wait.Truncate(time.Second)
		if frac := wait - whole; frac > 0 && frac <= l.spread.Hold {
			if l.held.Add(1) <= maxHeld {
				defer l.held.Add(-1)
				retryAfter, hold = whole, frac
			} else {
				l.held.Add(-1)
			}
		}
	}
	if len(l.hooks) > 0 {
		l.emit(r, key, heed.Event{Kind: heed.EventLimited, Time: now, Status: http.StatusTooManyRequests, Wait: retryAfter, RetryAt: d.RetryAt})
	}
	if hold > 0 {
		t := l.clock.NewTimer(hold)
		select {
		case <-t.C():
		case <-r.Context().Done():
			t.Stop()
			return // the client is gone
		}
	}
	w.Header().Set("Retry-After", strconv.FormatInt(int64(retryAfter/time.Second), 10))
	l.onLimited(w, r, Refusal{
		RetryAfter: retryAfter,
		RetryAt:    d.RetryAt,
		Wait:       max(0, d.RetryAt.Sub(l.clock.Now())),
		Window:     l.windows[i],
		Decision:   *d,
	})
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

func (l *Limiter) emit(r *http.Request, key string, e heed.Event) {
	e.Key = l.class(key, r)
	e.Method = r.Method
	e.URL = redact.Copy(r.URL) // query values may be tokens: keep them out of metrics and traces
	ctx := r.Context()
	for _, h := range l.hooks {
		h.OnEvent(ctx, e)
	}
}

// Canonical keys, as net/http stores them and heed's hint package reads
// them.
const (
	keyPolicy     = "Ratelimit-Policy"
	keyRateLimit  = "Ratelimit"
	keyXLimit     = "X-Ratelimit-Limit"
	keyXRemaining = "X-Ratelimit-Remaining"
	keyXReset     = "X-Ratelimit-Reset"
)

// The fields are written from one allocation: the []string values the
// header map needs and the bytes of the strings that change, which
// unsafe.String lays over the block's own buffer. Each value is a slice of
// capacity 1, so that a handler's Header().Add allocates anew rather than
// writing into the block. Nothing writes to the buffer once a string is
// made of it.
type quotaBlock struct {
	policy, rateLimit [1]string
	buf               [80]byte // a quoted name of 32 and two 19-digit numbers
}

type legacyBlock struct {
	quotaBlock
	xLimit, xRemaining, xReset [1]string
	xbuf                       [40]byte
}

// setQuota writes RateLimit-Policy (every window) and RateLimit (the most
// constraining window i), and the X-RateLimit fields if asked.
func (l *Limiter) setQuota(h http.Header, d *Decision, i int) {
	s := &d.States[i]
	t := int64(ceilSeconds(s.Reset) / time.Second)
	var q *quotaBlock
	var lb *legacyBlock
	if l.legacy {
		lb = new(legacyBlock)
		q = &lb.quotaBlock
	} else {
		q = new(quotaBlock)
	}
	b := append(q.buf[:0], l.prefixes[i]...)
	b = strconv.AppendInt(b, s.Remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, t, 10)
	q.policy[0] = l.policy
	q.rateLimit[0] = bytesString(b)
	h[keyPolicy] = q.policy[:]
	h[keyRateLimit] = q.rateLimit[:]
	if lb == nil {
		return
	}
	x := strconv.AppendInt(lb.xbuf[:0], s.Remaining, 10)
	n := len(x)
	x = strconv.AppendInt(x, t, 10)
	lb.xLimit[0] = l.limits[i]
	lb.xRemaining[0] = bytesString(x[:n])
	lb.xReset[0] = bytesString(x[n:])
	h[keyXLimit] = lb.xLimit[:]
	h[keyXRemaining] = lb.xRemaining[:]
	h[keyXReset] = lb.xReset[:]
}

// WriteProblem is the default Config.OnLimited: a 429 with RFC 9457
// problem details (application/problem+json) naming the window and, as
// the extension member retry_after, the seconds to wait with their
// fraction (Refusal.Wait):
//
//	{"type":"about:blank","title":"Too Many Requests","status":429,
//	 "detail":"The limit \"default\" of 100 requests per second is used up; retry after 1 s.",
//	 "policy":"default","retry_after":1.000}
func WriteProblem(w http.ResponseWriter, _ *http.Request, ref Refusal) {
	detail := fmt.Sprintf("The limit %q of %d requests per %s is used up; retry after %d s.",
		ref.Window.Name, ref.Window.Limit, perName(ref.Window.Per), int64(ref.RetryAfter/time.Second))
	ms := int64((ref.Wait + time.Millisecond - 1) / time.Millisecond)
	b := make([]byte, 0, 256)
	b = append(b, `{"type":"about:blank","title":"Too Many Requests","status":429,"detail":`...)
	b = strconv.AppendQuote(b, detail) // printable ASCII: Go's quoting is JSON's
	b = append(b, `,"policy":`...)
	b = strconv.AppendQuote(b, ref.Window.Name)
	b = append(b, `,"retry_after":`...)
	b = strconv.AppendInt(b, ms/1000, 10)
	b = append(b, '.')
	b = append(b, byte('0'+ms%1000/100), byte('0'+ms%100/10), byte('0'+ms%10))
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(b) // a client gone leaves nothing to do
}
