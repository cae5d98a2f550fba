package brooker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
)

// The model's backoff constants.
const (
	Base = 5 * time.Millisecond
	Cap  = 2 * time.Second
)

// Strategy is a backoff strategy the simulation can run.
type Strategy uint8

// The five reference strategies, named as in Brooker's simulator, and
// heed's two variants.
const (
	None         Strategy = iota + 1 // no sleep: re-read right after the failed response
	Exponential                      // min(cap, base*2^n), no jitter
	FullJitter                       // U(0, expo(n))
	EqualJitter                      // expo(n)/2 + U(0, expo(n)/2)
	Decorr                           // min(cap, U(base, 3*prev)), per client
	HeedDefaults                     // heed's default backoff, at most its default attempts
	HeedBudget                       // FullJitter gated by one shared budget of heed's default RatioConfig
)

var names = [...]string{
	None:         "None",
	Exponential:  "Exponential",
	FullJitter:   "FullJitter",
	EqualJitter:  "EqualJitter",
	Decorr:       "Decorr",
	HeedDefaults: "heed-defaults",
	HeedBudget:   "heed-budget",
}

// String returns the strategy's name: the simulator's for the reference
// strategies, "heed-defaults" and "heed-budget" for heed's.
func (s Strategy) String() string {
	if s.valid() {
		return names[s]
	}
	return fmt.Sprintf("Strategy(%d)", uint8(s))
}

func (s Strategy) valid() bool { return s >= None && s <= HeedBudget }

// Heed reports whether s is one of heed's variants, which may give up.
func (s Strategy) Heed() bool { return s == HeedDefaults || s == HeedBudget }

// Reference returns the five strategies of Brooker's simulator.
func Reference() []Strategy { return []Strategy{None, Exponential, FullJitter, EqualJitter, Decorr} }

// All returns the reference strategies followed by heed's variants.
func All() []Strategy { return append(Reference(), HeedDefaults, HeedBudget) }

// ParseStrategies parses a comma-separated list of strategy names (case
// does not matter), or "all" or "reference". Unknown and repeated names
// are errors, all named at once.
func ParseStrategies(list string) ([]Strategy, error) {
	switch strings.ToLower(strings.TrimSpace(list)) {
	case "all":
		return All(), nil
	case "reference":
		return Reference(), nil
	}
	var out []Strategy
	var unknown, dup []string
	seen := map[Strategy]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		s, ok := lookup(name)
		switch {
		case !ok:
			unknown = append(unknown, fmt.Sprintf("%q", name))
		case seen[s]:
			dup = append(dup, s.String())
		default:
			seen[s] = true
			out = append(out, s)
		}
	}
	var errs []error
	if len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("brooker: unknown strategy %s (want a comma-separated list of %s, or all or reference)",
			strings.Join(unknown, ", "), strings.Join(names[1:], ", ")))
	}
	if len(dup) > 0 {
		errs = append(errs, fmt.Errorf("brooker: strategy %s listed twice", strings.Join(dup, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func lookup(name string) (Strategy, bool) {
	for s := None; s <= HeedBudget; s++ {
		if strings.EqualFold(name, names[s]) {
			return s, true
		}
	}
	return 0, false
}

// policy is what the simulation needs to know about a strategy.
type policy struct {
	b         backoff.Backoff // zero for None: no sleep
	draw      bool            // the strategy takes a uniform draw per sleep
	shift     int             // added to the model's attempt to get heed's retry number
	maxWrites int             // a client gives up after this many failed writes; 0: never
	budget    bool            // retries withdraw from one shared Ratio budget
}

func (s Strategy) policy() policy {
	switch s {
	case Exponential:
		return policy{b: backoff.Exponential(Base, Cap)}
	case FullJitter:
		return policy{b: backoff.Full(Base, Cap), draw: true}
	case EqualJitter:
		return policy{b: backoff.Equal(Base, Cap), draw: true}
	case Decorr:
		return policy{b: backoff.Decorrelated(Base, Cap), draw: true}
	case HeedDefaults:
		// heed numbers its first retry 0 (policy.go: Delay(o.Attempt-1, …)),
		// so a heed client's first retry draws under the base, not twice it.
		// The backoff is heed's documented default (see heed.WithBackoff);
		// the attempts are read from a default policy.
		p, _ := heed.NewPolicy()
		return policy{b: backoff.Full(500*time.Millisecond, 30*time.Second), draw: true, shift: -1, maxWrites: p.MaxAttempts()}
	case HeedBudget:
		return policy{b: backoff.Full(Base, Cap), draw: true, budget: true}
	}
	return policy{}
}

// sleep returns the backoff after the model's attempt-th failure (attempt
// counts from 1), given the client's previous sleep (Base before the
// first, as the model initialises Decorr) and a uniform draw u in [0, 1).
// It is the one function the simulation takes its sleeps from.
func (p *policy) sleep(attempt int, prev time.Duration, u float64) time.Duration {
	if p.b == (backoff.Backoff{}) {
		return 0
	}
	return p.b.Delay(attempt+p.shift, prev, u)
}
