package heed

// The decision core is unexported; these names let the external tests
// drive it in virtual time.
type (
	Decision = decision
	When     = when
)

func (p *Policy) Decide(o Outcome, w When) Decision { return p.decide(o, w) }

// The defaults, for the tests that check them.
const (
	DefaultMaxAttempts = defaultMaxAttempts
	DefaultMaxWait     = defaultMaxWait
)

var DefaultBackoff = defaultBackoff
