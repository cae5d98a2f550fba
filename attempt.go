package heed

import (
	"context"
	"net/http"
	"time"

	"github.com/heed-go/heed/internal/tierctx"
)

// WaitSource says where a wait came from.
type WaitSource uint8

const (
	SourceNone           WaitSource = iota
	SourceRetryAfter                // the server's Retry-After
	SourceRateLimitReset            // an exhausted quota's reset (X-RateLimit-Reset, RateLimit)
	SourceBackoff                   // the backoff strategy, for want of a hint
	SourceRefresh                   // none: retried at once after refreshing credentials
	SourceThrottle                  // the key's rate limit, concurrency limit or pacer
)

func (s WaitSource) String() string {
	switch s {
	case SourceRetryAfter:
		return "retry_after"
	case SourceRateLimitReset:
		return "ratelimit_reset"
	case SourceBackoff:
		return "backoff"
	case SourceRefresh:
		return "refresh"
	case SourceThrottle:
		return "throttle"
	}
	return "none"
}

// Attempt records one attempt of a call.
type Attempt struct {
	// Number counts from 1.
	Number int
	// Start is when the attempt began, on the policy's clock, and Duration
	// how long it took until its response headers (and body, when heed read
	// it inside the attempt) or its error. Both are zero for a first attempt
	// when the policy has no hook and no time bound: heed does not read the
	// clock before a first attempt nothing needs timed, which keeps a
	// request that succeeds at once cheap.
	Start    time.Time
	Duration time.Duration
	// Status is the response's status code; 0 if there was none.
	Status int
	// Err is the attempt's error, nil if a response arrived.
	Err error
	// Kind classifies Err.
	Kind ErrorKind
	// Wait is how long heed waited after this attempt before the next one,
	// and Source where that wait came from. Zero for the last attempt.
	Wait   time.Duration
	Source WaitSource
	// Hedge is the hedged copy whose answer the attempt took: 0 for the
	// first copy, 1 for the first hedge (see WithHedging).
	Hedge int
}

// callKey finds the call state in a context; a tier serving a retry
// stores tierctx.Above under it instead.
type callKey = tierctx.CallKey

// retriedAbove stands for the loop of a caller above a tier that is
// retrying: the heed calls under it make a single attempt.
var retriedAbove = &call{Context: context.Background()}

// call is the state of one logical request across its attempts. It is also
// the context handed to every attempt after the first (and to the function
// run by Do), which is how a heed layer below learns that a heed retry loop
// above it will do the retrying.
type call struct {
	context.Context
	policy   *Policy
	key      string    // the per-key state's key, for calls made through Do
	start    time.Time // when a Do call began
	attempts []Attempt
	inline   [4]Attempt // room for the usual few attempts without a second allocation
}

func newCall(ctx context.Context, p *Policy) *call {
	c := &call{Context: ctx, policy: p}
	c.attempts = c.inline[:0]
	return c
}

// Value answers callKey with the call itself.
func (c *call) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// callFrom returns the heed call a context belongs to, if any.
func callFrom(ctx context.Context) *call {
	switch v := ctx.Value(callKey{}).(type) {
	case *call:
		return v
	case tierctx.Above:
		return retriedAbove
	}
	return nil
}

// Attempts returns the attempts heed made for resp, in order. A response
// heed got on its first attempt carries no record, so Attempts describes it
// as that single attempt (as it does any response that did not come through
// heed). The slice is a copy.
func Attempts(resp *http.Response) []Attempt {
	if resp == nil {
		return nil
	}
	if resp.Request != nil {
		if c := callFrom(resp.Request.Context()); c != nil && len(c.attempts) > 0 {
			return append([]Attempt(nil), c.attempts...)
		}
	}
	return []Attempt{{Number: 1, Status: resp.StatusCode}}
}
