package audit

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heed-go/heed/clock"
)

// Defaults of a [Config].
const (
	// DefaultClass is the class of every request when Config.Class is nil,
	// and of those for which it returns "".
	DefaultClass = "default"
	// OtherClass counts the requests of classes past Config.MaxClasses, and
	// of class names that are not valid UTF-8 or longer than 64 bytes.
	OtherClass = "other"
	// DefaultMaxClasses caps the distinct classes.
	DefaultMaxClasses = 20
	// DefaultWindow is the span of a Snapshot's Window counts.
	DefaultWindow = 5 * time.Minute
)

// buckets is how many slices the window is cut into: it slides by
// Window/buckets at a time, so its counts cover between 95% and 100% of
// it.
const buckets = 20

// Config configures an [Auditor]. The zero Config is ready to use.
type Config struct {
	// Class names the caller class of a request: the calling service, from
	// its authenticated identity, a header your own clients set, or the
	// route. Nil puts every request in DefaultClass. It runs on every
	// request, so it should be cheap and not allocate; the names it returns
	// should come from a small set (they become metric labels), and from
	// nothing a caller can choose freely, or the first callers fill the
	// cap with names of their own.
	Class func(*http.Request) string
	// MaxClasses caps the distinct class names (DefaultClass included);
	// the requests of further ones count in OtherClass. Zero or less is
	// DefaultMaxClasses.
	MaxClasses int
	// Window is the span over which a Snapshot's Window counts, maxima and
	// fan-out are taken. Zero or less is DefaultWindow.
	Window time.Duration
	// Clock tells the time for the window; nil is [clock.Real]. Tests give
	// a heedtest.Clock.
	Clock clock.Clock
	// Markers adds the retry markers of layers of your own (at most 4) to
	// the built-in ones.
	Markers []Marker
}

// Auditor records the retry markers of the requests a server receives.
// Its [Auditor.Middleware] wraps a handler; [Auditor.Snapshot] reads what
// it saw. An Auditor is safe for concurrent use.
type Auditor struct {
	layers     []layer
	classFn    func(*http.Request) string
	maxClasses int
	window     time.Duration
	width      time.Duration // of a bucket
	clock      clock.Clock
	real       bool      // no Config.Clock: time.Since reads only the monotonic clock, about half the cost of Now
	start      time.Time // epochs are counted from it, on the monotonic clock when real

	def     *class                            // DefaultClass when classFn is nil, used without a lookup
	classes atomic.Pointer[map[string]*class] // copied on write: lookups take no lock
	mu      sync.Mutex                        // serializes additions to classes
	other   atomic.Pointer[class]
}

// New returns an Auditor. It panics if cfg.Markers is invalid (a name or
// header that is empty, malformed or taken, or more than 4 markers): like
// a bad route, a mistake in the program, best found when it starts.
func New(cfg Config) *Auditor {
	ls, err := layers(cfg.Markers)
	if err != nil {
		panic(err)
	}
	a := &Auditor{layers: ls, classFn: cfg.Class, maxClasses: cfg.MaxClasses, window: cfg.Window, clock: cfg.Clock}
	if a.maxClasses <= 0 {
		a.maxClasses = DefaultMaxClasses
	}
	if a.window <= 0 {
		a.window = DefaultWindow
	}
	a.width = max(a.window/buckets, 1)
	if a.clock == nil {
		a.clock, a.real = clock.Real(), true
	}
	a.start = a.clock.Now()
	m := map[string]*class{}
	if a.classFn == nil {
		a.def = a.newClass(DefaultClass)
		m[DefaultClass] = a.def
	}
	a.classes.Store(&m)
	return a
}

// Middleware returns a handler that records the retry markers of every
// request, then serves it with next. Recording a request without markers
// costs no allocation (as long as Config.Class allocates none).
func (a *Auditor) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.Record(r)
		next.ServeHTTP(w, r)
	})
}

// Record records the retry markers of r, for servers that do not take a
// middleware. Call it once per request.
func (a *Auditor) Record(r *http.Request) {
	b := a.class(r).bucket(a.epoch())
	retrying, valids := 0, 0
	position := int64(1)
	for i := range a.layers {
		l := &a.layers[i]
		vs := r.Header[l.header]
		if len(vs) == 0 {
			continue // the common case: not behind this layer, or its first attempt
		}
		m, lc := l.parse(vs), &b.layers[i]
		if m.state != valid {
			lc.malformed.Add(1)
			continue
		}
		valids++
		lc.marked.Add(1)
		if m.attempt >= 2 {
			lc.retries.Add(1)
			retrying++
		}
		storeMax(&lc.maxAttempt, m.attempt)
		if m.declared > 0 {
			storeMax(&lc.maxDeclared, m.declared)
		}
		position = mulSat(position, m.attempt)
	}
	if valids > 0 {
		storeMax(&b.maxPosition, position)
	}
	switch {
	case retrying == 0:
		b.first.Add(1) // the first request of a call: one per retry tree
	case retrying == 1:
		b.retries.Add(1)
	default:
		b.retries.Add(1)
		b.compound.Add(1)
	}
}

// epoch returns the number of the bucket-wide slice of time we are in,
// counted from the Auditor's start. The real clock's times carry a
// monotonic reading, so a step of the wall clock does not move it.
func (a *Auditor) epoch() int64 {
	var d time.Duration
	if a.real {
		d = time.Since(a.start)
	} else {
		d = a.clock.Now().Sub(a.start)
	}
	if d < 0 {
		return 0
	}
	return int64(d / a.width)
}

// class returns the class r belongs to.
func (a *Auditor) class(r *http.Request) *class {
	if a.classFn == nil {
		return a.def
	}
	name := a.classFn(r)
	if name == "" {
		name = DefaultClass
	}
	if c := (*a.classes.Load())[name]; c != nil {
		return c
	}
	return a.addClass(name)
}

// addClass returns the class named name, adding it while there is room;
// past the cap, or for a name unfit for a label, OtherClass.
func (a *Auditor) addClass(name string) *class {
	if name == OtherClass || len(name) > 64 || !utf8.ValidString(name) || len(*a.classes.Load()) >= a.maxClasses {
		return a.otherClass()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.classes.Load()
	if c := old[name]; c != nil {
		return c
	}
	if len(old) >= a.maxClasses {
		return a.otherClass()
	}
	name = strings.Clone(name) // not a slice of some request's memory
	m := make(map[string]*class, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := a.newClass(name)
	m[name] = c
	a.classes.Store(&m)
	return c
}

func (a *Auditor) otherClass() *class {
	if c := a.other.Load(); c != nil {
		return c
	}
	a.other.CompareAndSwap(nil, a.newClass(OtherClass))
	return a.other.Load()
}

// class holds one caller class's counts: a ring of buckets, one per slice
// of the window, and what the buckets that left the ring had counted.
type class struct {
	name    string
	mu      sync.Mutex // held to recycle a bucket and to read the class
	buckets [buckets]bucket
	retired tally // counts of the buckets recycled, for the totals; under mu
}

// bucket counts one slice of time. Its counters are atomic: requests of
// the bucket's epoch add to them without a lock. Only moving the bucket on
// to a new epoch takes the class's lock.
type bucket struct {
	epoch       atomic.Int64 // -1 before first use
	first       atomic.Int64
	retries     atomic.Int64
	compound    atomic.Int64
	maxPosition atomic.Int64
	layers      []layerBucket
}

type layerBucket struct {
	marked, retries, malformed, maxAttempt, maxDeclared atomic.Int64
}

func (a *Auditor) newClass(name string) *class {
	c := &class{name: name, retired: tally{layers: make([]layerTally, len(a.layers))}}
	for i := range c.buckets {
		c.buckets[i].epoch.Store(-1)
		c.buckets[i].layers = make([]layerBucket, len(a.layers))
	}
	return c
}

// bucket returns the bucket of epoch e, recycling it if it still holds an
// older epoch's counts.
//
// A request that found the bucket current and adds to it after another
// recycled it for a later epoch would count in the later slice: that
// takes a goroutine stalled for a whole window between the two, and even
// then the totals stay right.
func (c *class) bucket(e int64) *bucket {
	b := &c.buckets[e%buckets]
	if b.epoch.Load() == e {
		return b
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.epoch.Load() >= e {
		return b // recycled meanwhile; or a clock that went back, counted in the newer slice
	}
	b.drainInto(&c.retired)
	b.epoch.Store(e) // after the drain: a request that sees e adds to the cleared counts
	return b
}

// drainInto adds the bucket's counts to t and clears them.
func (b *bucket) drainInto(t *tally) {
	t.first += b.first.Swap(0)
	t.retries += b.retries.Swap(0)
	t.compound += b.compound.Swap(0)
	t.maxPosition = max(t.maxPosition, b.maxPosition.Swap(0))
	for i := range b.layers {
		l, r := &b.layers[i], &t.layers[i]
		r.marked += l.marked.Swap(0)
		r.retries += l.retries.Swap(0)
		r.malformed += l.malformed.Swap(0)
		r.maxAttempt = max(r.maxAttempt, l.maxAttempt.Swap(0))
		r.maxDeclared = max(r.maxDeclared, l.maxDeclared.Swap(0))
	}
}

// load returns the bucket's counts.
func (b *bucket) load() tally {
	t := tally{
		first: b.first.Load(), retries: b.retries.Load(), compound: b.compound.Load(),
		maxPosition: b.maxPosition.Load(), layers: make([]layerTally, len(b.layers)),
	}
	for i := range b.layers {
		l := &b.layers[i]
		t.layers[i] = layerTally{
			marked: l.marked.Load(), retries: l.retries.Load(), malformed: l.malformed.Load(),
			maxAttempt: l.maxAttempt.Load(), maxDeclared: l.maxDeclared.Load(),
		}
	}
	return t
}

// tally is a plain copy of counts: sums, and maxima.
type tally struct {
	first, retries, compound, maxPosition int64
	layers                                []layerTally
}

type layerTally struct {
	marked, retries, malformed, maxAttempt, maxDeclared int64
}

func (t *tally) add(u tally) {
	t.first += u.first
	t.retries += u.retries
	t.compound += u.compound
	t.maxPosition = max(t.maxPosition, u.maxPosition)
	for i := range t.layers {
		l, m := &t.layers[i], u.layers[i]
		l.marked += m.marked
		l.retries += m.retries
		l.malformed += m.malformed
		l.maxAttempt = max(l.maxAttempt, m.maxAttempt)
		l.maxDeclared = max(l.maxDeclared, m.maxDeclared)
	}
}

// storeMax raises v to n.
func storeMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if old >= n || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// Snapshot is what an Auditor has seen.
type Snapshot struct {
	// At is when the snapshot was taken, on the Auditor's clock.
	At time.Time
	// Window is the span of the Window counts (Config.Window): they cover
	// the last Window, give or take a twentieth of it.
	Window time.Duration
	// Layers names the layers whose markers are read, in the order of
	// every Counts.Layers: heed, envoy, grpc, aws, then Config.Markers.
	Layers []string
	// Classes holds a ClassStats per caller class seen, by name.
	Classes []ClassStats
}

// Class returns the stats of the class named name.
func (s Snapshot) Class(name string) (ClassStats, bool) {
	for _, c := range s.Classes {
		if c.Class == name {
			return c, true
		}
	}
	return ClassStats{}, false
}

// ClassStats holds one caller class's counts, over the window and since
// the Auditor was made.
type ClassStats struct {
	Class string
	// Window counts the requests of the last Snapshot.Window; its maxima
	// are the window's. Read the fan-out here.
	Window Counts
	// Total counts every request since New; its maxima are the highest
	// ever seen. Its sums only grow: export them as counters.
	Total Counts
}

// Counts describes the requests of one class.
type Counts struct {
	// Requests is every request, First + Retries.
	Requests int64
	// First counts the requests no marker called a retry: each marker
	// absent, or saying attempt 1. One of them starts every retry tree.
	First int64
	// Retries counts the requests at least one marker called a retry.
	Retries int64
	// Compound counts the retries two or more layers called a retry: a
	// retry of a retry, the multiplication the audit is looking for.
	Compound int64
	// MaxPosition is the highest product of a request's attempt numbers
	// (1 for each layer without a marker): a request at position P proves
	// the stack lets one call make at least P requests. 0 when no request
	// carried a valid marker.
	MaxPosition int64
	// FanOut is Requests / First: how many requests arrive, on average, per
	// call that started a tree. 0 when there was no first attempt: then it
	// is unknown, not 1.
	FanOut float64
	// Layers holds a LayerCounts per layer, in the order of
	// Snapshot.Layers.
	Layers []LayerCounts
}

// Layer returns the counts of the layer named name.
func (c Counts) Layer(name string) (LayerCounts, bool) {
	for _, l := range c.Layers {
		if l.Layer == name {
			return l, true
		}
	}
	return LayerCounts{}, false
}

// LayerCounts describes one layer's markers on one class's requests.
type LayerCounts struct {
	Layer string
	// Marked counts the requests carrying a valid marker of the layer,
	// first attempts included: how much of the traffic the layer marks.
	Marked int64
	// Retries counts the requests the layer's marker calls a retry
	// (attempt 2 or more).
	Retries int64
	// Malformed counts the markers ignored: not a number, out of range
	// (0, negative, above MaxAttempt), repeated, or inconsistent.
	Malformed int64
	// MaxAttempt is the highest attempt number the layer's markers
	// carried; 0 when none did.
	MaxAttempt int64
	// MaxDeclared is the most attempts the layer declared it would make
	// (aws's max=M); 0 when it does not say.
	MaxDeclared int64
	// Factor is Requests / (Requests - Retries): all the requests over
	// those sent under the layer's first attempts, the layer's own
	// multiplication. The factors of the layers multiply to the FanOut
	// when the layers retry independently of each other (see the package
	// documentation). 0 when every request was one of the layer's
	// retries.
	Factor float64
}

// Snapshot returns what the Auditor has seen: per class, the counts of the
// window and the totals since New.
func (a *Auditor) Snapshot() Snapshot {
	now, cur := a.clock.Now(), a.epoch()
	s := Snapshot{At: now, Window: a.window, Layers: make([]string, len(a.layers))}
	for i, l := range a.layers {
		s.Layers[i] = l.name
	}
	m := *a.classes.Load()
	cs := make([]*class, 0, len(m)+1)
	for _, c := range m {
		cs = append(cs, c)
	}
	if c := a.other.Load(); c != nil {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		win, total := c.read(cur, len(a.layers))
		s.Classes = append(s.Classes, ClassStats{Class: c.name, Window: win.counts(a.layers), Total: total.counts(a.layers)})
	}
	return s
}

// read returns the class's counts over the window ending in epoch cur, and
// in all. The lock keeps a bucket from moving to retired while it is read,
// so the totals never go down.
func (c *class) read(cur int64, n int) (win, total tally) {
	win.layers, total.layers = make([]layerTally, n), make([]layerTally, n)
	c.mu.Lock()
	defer c.mu.Unlock()
	total.add(c.retired)
	for i := range c.buckets {
		b := &c.buckets[i]
		e := b.epoch.Load()
		t := b.load()
		total.add(t)
		if e > cur-buckets && e <= cur {
			win.add(t)
		}
	}
	return win, total
}

// counts turns a tally into Counts.
func (t tally) counts(ls []layer) Counts {
	c := Counts{
		Requests: t.first + t.retries, First: t.first, Retries: t.retries, Compound: t.compound,
		MaxPosition: t.maxPosition, FanOut: ratio(t.first+t.retries, t.first),
		Layers: make([]LayerCounts, len(ls)),
	}
	for i, l := range t.layers {
		c.Layers[i] = LayerCounts{
			Layer: ls[i].name, Marked: l.marked, Retries: l.retries, Malformed: l.malformed,
			MaxAttempt: l.maxAttempt, MaxDeclared: l.maxDeclared,
			Factor: ratio(c.Requests, c.Requests-l.retries),
		}
	}
	return c
}

// ratio returns n/d, or 0 when d is not positive.
func ratio(n, d int64) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / float64(d)
}
