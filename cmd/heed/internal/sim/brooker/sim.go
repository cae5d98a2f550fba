package brooker

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/heed-go/heed/budget"
)

// Network delay per leg, in ms: |Normal(netMean, netSD)|.
const (
	netMean = 10.0
	netSD   = 2.0
)

// epoch is where virtual time 0 sits when the budget needs a time.Time.
var epoch = time.Date(2015, time.March, 4, 0, 0, 0, 0, time.UTC)

type kind uint8

const (
	readReq  kind = iota // arrives at the server
	readRsp              // arrives at the client, carrying the version
	writeReq             // arrives at the server, carrying the version read
	writeRsp             // arrives at the client, carrying ok (arg 1) or not (0)
)

// event is a message arriving. It is a plain value so the heap holds no
// pointers and pushing boxes nothing.
type event struct {
	t      float64 // ms
	seq    uint64  // push order: equal times pop first-in first-out
	client int32
	arg    int32
	kind   kind
}

// eventHeap is a binary min-heap on (t, seq), typed to avoid container/heap's
// interface calls and per-push boxing.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].t < h[j].t || h[i].t == h[j].t && h[i].seq < h[j].seq
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// sim runs the model; one per goroutine, reused across runs so that a run
// allocates nothing but the budget (heed-budget) and the series (if asked).
type sim struct {
	pcg     *rand.PCG
	rng     *rand.Rand
	heap    eventHeap
	attempt []int32         // failed writes per client
	prev    []time.Duration // Decorr's previous sleep per client
	seq     uint64
}

func newSim() *sim {
	pcg := rand.NewPCG(0, 0)
	return &sim{pcg: pcg, rng: rand.New(pcg)}
}

// result is one run's metrics.
type result struct {
	calls    int
	makespan float64 // ms
	gaveUp   int
}

// delay draws one network leg.
func (s *sim) delay() float64 { return math.Abs(netMean + netSD*s.rng.NormFloat64()) }

func (s *sim) schedule(t float64, c int32, k kind, arg int32) {
	s.heap.push(event{t: t, seq: s.seq, client: c, arg: arg, kind: k})
	s.seq++
}

// run simulates one run of n clients under p from the given seed. If
// series is not nil, every write's arrival time (ms) is appended to it.
func (s *sim) run(p *policy, n int, seed1, seed2 uint64, series *[]float64) (result, error) {
	// Reseeding the one PCG is a fresh generator for this run, without
	// allocating one.
	s.pcg.Seed(seed1, seed2)
	s.seq = 0
	s.heap = s.heap[:0]
	if cap(s.attempt) < n {
		s.attempt = make([]int32, n)
		s.prev = make([]time.Duration, n)
		s.heap = make(eventHeap, 0, n) // a client has at most one message in flight
	}
	s.attempt = s.attempt[:n]
	s.prev = s.prev[:n]
	for c := range n {
		s.attempt[c] = 0
		s.prev[c] = Base
	}
	var b *budget.Ratio
	if p.budget {
		var err error
		if b, err = budget.NewRatio(budget.RatioConfig{}); err != nil {
			return result{}, err
		}
	}

	var r result
	version := int32(0)
	for c := range n {
		if b != nil {
			b.Request() // the call's first attempt, as heed counts it
		}
		s.schedule(s.delay(), int32(c), readReq, 0)
	}
	for len(s.heap) > 0 {
		e := s.heap.pop()
		r.makespan = e.t
		switch e.kind {
		case readReq:
			s.schedule(e.t+s.delay(), e.client, readRsp, version)
		case readRsp:
			s.schedule(e.t+s.delay(), e.client, writeReq, e.arg)
		case writeReq:
			r.calls++
			if series != nil {
				*series = append(*series, e.t)
			}
			ok := int32(0)
			if e.arg == version {
				version++
				ok = 1
			}
			s.schedule(e.t+s.delay(), e.client, writeRsp, ok)
		case writeRsp:
			if e.arg == 1 {
				continue // done
			}
			c := e.client
			s.attempt[c]++ // before the backoff, so the first retry is n = 1
			if p.maxWrites > 0 && int(s.attempt[c]) >= p.maxWrites {
				r.gaveUp++
				continue
			}
			if b != nil && !b.Withdraw(epoch.Add(msToDuration(e.t))) {
				r.gaveUp++
				continue
			}
			// Network delay first, then the backoff, as the model's
			// "t + d() + backoff" draws them.
			t := e.t + s.delay()
			u := 0.0
			if p.draw {
				u = s.rng.Float64()
			}
			w := p.sleep(int(s.attempt[c]), s.prev[c], u)
			s.prev[c] = w // the capped value, as the model stores it
			s.schedule(t+durationToMs(w), c, readReq, 0)
		}
	}
	return r, nil
}

func msToDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

func durationToMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
