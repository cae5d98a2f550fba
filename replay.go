package heed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/heed-go/heed/clock"
	"github.com/heed-go/heed/outbox"
)

// errNoOutbox is Replay's error under a policy without WithOutbox.
var errNoOutbox = errors.New("heed: the policy has no outbox (see WithOutbox)")

// ReplayResult counts what one [Policy.ReplayDue] did with the entries it
// took from the outbox.
type ReplayResult struct {
	// Delivered entries were accepted by the server and left the outbox.
	Delivered int
	// Rescheduled entries were sent and failed again for a reason time
	// can fix; they are due again later.
	Rescheduled int
	// Deferred entries were not sent: an entry of the same key had just
	// been told to wait (a Retry-After, an open breaker), so they wait as
	// long.
	Deferred int
	// Dead entries will not be sent again: refused for a reason time
	// cannot fix, or past their time to live.
	Dead int
}

// Replay sends the outbox's due entries again, through p, until ctx ends;
// then it returns nil, once the sends under way have finished and their
// outcomes are written. It starts no goroutine that outlives it. Run it in
// a goroutine of your own, or several (each sends up to
// Outbox.Concurrency entries at once); with a shared store (heedredis),
// run it in as many processes as you like: each entry goes to one worker
// at a time. Errors of the store are logged and the worker tries again
// after Outbox.Poll. It returns an error at once when p has no outbox.
//
// See [Policy.ReplayDue] for what happens to each entry.
func (p *Policy) Replay(ctx context.Context) error {
	if err := p.replayable(); err != nil {
		return err
	}
	o := p.outbox
	for {
		if _, err := p.ReplayDue(ctx); err != nil && ctx.Err() == nil {
			if lg := p.log(); lg != nil {
				lg.LogAttrs(ctx, slog.LevelError, "heed: outbox store failed", slog.String("error", err.Error()))
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := o.Poll
		if st, err := o.Store.Stats(ctx); err == nil && !st.NextAt.IsZero() {
			// Entries due now that this pass could not claim are leased to
			// another worker: look again soon, not at once.
			wait = min(wait, max(st.NextAt.Sub(p.clock.Now()), o.Poll/10))
		}
		if !clock.Sleep(p.clock, wait, ctx.Done()) {
			return nil
		}
	}
}

func (p *Policy) replayable() error {
	if p.keys == nil {
		return errZeroPolicy
	}
	if p.outbox == nil {
		return errNoOutbox
	}
	return nil
}

// ReplayDue sends every entry of the outbox that is due now, and returns
// once each has an outcome, for a command line tool, a scheduled job or a
// test; [Policy.Replay] calls it in a loop.
//
// Each entry goes out as it was queued (the same method, URL, header with
// its Idempotency-Key, and body bytes), after Outbox.Prepare, through p's
// transport as one attempt: the outbox spaces the tries of an entry
// itself, so the policy's retries would only add load to a server that is
// struggling. The attempt shares its key's breaker, retry budget, limits
// and pacing with the rest of the process. Then:
//
//   - a response below 400: delivered, the entry is deleted;
//   - a failure time can fix (408, 425, 429, 5xx but 501 and 505, a
//     transport error, the breaker open, the limits refusing): the entry
//     is due again after Outbox.Backoff, and no sooner than the server's
//     Retry-After or the breaker's reopening; the other entries of its key
//     wait as long when the server or breaker named a time;
//   - any other failure (a 4xx, a refused certificate): the entry is dead;
//   - an entry whose time to live has run out, or would before its next
//     try, is dead.
//
// Entries go out soonest due first, and, among those due together, in the
// order they were queued; that is not a strict FIFO per destination: an
// entry that failed waits its own backoff while later ones go, so one
// entry the server keeps refusing never holds up the others. Sends made
// before ctx ended still have their outcomes written.
func (p *Policy) ReplayDue(ctx context.Context) (ReplayResult, error) {
	if err := p.replayable(); err != nil {
		return ReplayResult{}, err
	}
	o := p.outbox
	r := replayPass{p: p, start: p.clock.Now(), blocked: map[string]time.Time{}}
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		// Claimed at the pass's start: an entry the pass rescheduled is
		// never due again within it.
		batch, err := o.Store.Claim(ctx, r.start, 4*o.Concurrency)
		if err != nil {
			wg.Wait()
			return r.result(), err
		}
		if len(batch) == 0 {
			break
		}
		for i, e := range batch {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				r.release(ctx, batch[i:]) // not sent: due again at once
				wg.Wait()
				return r.result(), nil
			}
			wg.Go(func() {
				defer func() { <-sem }()
				r.send(ctx, e)
			})
		}
	}
	wg.Wait()
	return r.result(), nil
}

// replayPass is the state of one ReplayDue.
type replayPass struct {
	p     *Policy
	start time.Time

	mu      sync.Mutex
	res     ReplayResult
	blocked map[string]time.Time // key -> until when its entries wait
}

func (r *replayPass) result() ReplayResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res
}

func (r *replayPass) count(f func(*ReplayResult)) {
	r.mu.Lock()
	f(&r.res)
	r.mu.Unlock()
}

// write records an entry's new state; the worker's context may have ended
// while it was being sent, and its outcome must be kept all the same.
func (r *replayPass) write(ctx context.Context, e *outbox.Entry) {
	// Not found: an operator dropped it meanwhile. Lease lost: another
	// worker took it over and its report counts.
	if err := r.p.outbox.Store.Update(context.WithoutCancel(ctx), e); err != nil && !errors.Is(err, outbox.ErrNotFound) && !errors.Is(err, outbox.ErrLeaseLost) {
		r.storeFailed(ctx, e, err)
	}
}

func (r *replayPass) storeFailed(ctx context.Context, e *outbox.Entry, err error) {
	if lg := r.p.log(); lg != nil {
		lg.LogAttrs(ctx, slog.LevelError, "heed: outbox store failed", slog.String("entry", e.ID), slog.String("error", err.Error()))
	}
}

// release hands back claimed entries unsent.
func (r *replayPass) release(ctx context.Context, es []*outbox.Entry) {
	for _, e := range es {
		r.write(ctx, e)
	}
}

// send replays e and records its outcome.
func (r *replayPass) send(ctx context.Context, e *outbox.Entry) {
	p, o := r.p, r.p.outbox
	now := p.clock.Now()
	if !now.Before(e.Expires) {
		r.bury(ctx, e, ErrExpired, 0, nil)
		return
	}
	r.mu.Lock()
	until := r.blocked[e.Key]
	r.mu.Unlock()
	if until.After(now) {
		r.postpone(ctx, e, until)
		return
	}
	req, err := entryRequest(ctx, e)
	if err != nil {
		r.bury(ctx, e, ErrNotRetryable, 0, err)
		return
	}
	if o.Prepare != nil {
		if err := o.Prepare(req.Context(), req); err != nil {
			r.later(ctx, e, 0, fmt.Errorf("Outbox.Prepare: %w", err), time.Time{})
			return
		}
	}
	resp, err := p.Transport().RoundTrip(req)
	if ctx.Err() != nil && err != nil {
		r.write(ctx, e) // cut short by the worker's end: not a replay
		return
	}
	var fe *Error
	if err != nil && errors.As(err, &fe) && len(fe.Attempts) == 0 && !fe.RetryAt.IsZero() {
		// Refused before it was sent (an open breaker, the key's limits):
		// not a replay; the key's entries wait until the named time.
		r.postpone(ctx, e, fe.RetryAt)
		return
	}
	e.Replays++
	if err == nil {
		drainAndClose(resp.Body)
		switch {
		case resp.StatusCode < 400:
			r.deliver(ctx, e, resp.StatusCode)
		case failedStatus(resp.StatusCode) || resp.StatusCode == http.StatusTooEarly:
			d, _, _ := serverHint(resp.Header, nil, p.clock.Now())
			var retryAt time.Time
			if d > 0 {
				retryAt = p.clock.Now().Add(d)
			}
			r.later(ctx, e, resp.StatusCode, nil, retryAt)
		default:
			r.bury(ctx, e, ErrNotRetryable, resp.StatusCode, nil)
		}
		return
	}
	switch {
	case fe == nil:
		r.later(ctx, e, 0, err, time.Time{})
	case laterReason(fe.Reason):
		r.later(ctx, e, 0, err, fe.RetryAt)
	default:
		r.bury(ctx, e, fe.Reason, 0, err)
	}
}

// entryRequest rebuilds e's request, marked as a replay and filed under
// e's key, to be sent as one attempt.
func entryRequest(ctx context.Context, e *outbox.Entry) (*http.Request, error) {
	rctx := Override(context.WithValue(ctx, replayKey{}, e.ID), Overrides{Key: e.Key, MaxAttempts: 1})
	req, err := http.NewRequestWithContext(rctx, e.Method, e.URL, bytes.NewReader(e.Body))
	if err != nil {
		return nil, err
	}
	if len(e.Body) == 0 {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	req.Header = e.Header.Clone()
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	return req, nil
}

// postpone puts e back unsent, due at until, and holds the other entries of
// its key as long.
func (r *replayPass) postpone(ctx context.Context, e *outbox.Entry, until time.Time) {
	r.block(e.Key, until)
	e.NextAt = until
	r.write(ctx, e)
	r.count(func(c *ReplayResult) { c.Deferred++ })
}

func (r *replayPass) block(key string, until time.Time) {
	r.mu.Lock()
	if until.After(r.blocked[key]) {
		r.blocked[key] = until
	}
	r.mu.Unlock()
}

func (r *replayPass) deliver(ctx context.Context, e *outbox.Entry, status int) {
	if err := r.p.outbox.Store.Delete(context.WithoutCancel(ctx), e.ID); err != nil && !errors.Is(err, outbox.ErrNotFound) {
		// Left in the store, it goes out again later: harmless where the
		// server honours its Idempotency-Key.
		r.storeFailed(ctx, e, err)
	}
	r.count(func(c *ReplayResult) { c.Delivered++ })
	r.p.outboxEvent(ctx, EventDelivered, e, nil, nil, status)
}

// later reschedules e after a failure time can fix; retryAt is when the
// server or the breaker said to come back, if they did.
func (r *replayPass) later(ctx context.Context, e *outbox.Entry, status int, err error, retryAt time.Time) {
	p, o := r.p, r.p.outbox
	now := p.clock.Now()
	e.NextAt = nextReplay(o, e.Replays, now, retryAt, p.rand())
	if !e.NextAt.After(r.start) {
		e.NextAt = r.start.Add(time.Millisecond) // not again within this pass
	}
	e.LastStatus, e.LastError = status, ""
	if err != nil {
		e.LastError = r.redactErr(err, e)
	}
	if !e.NextAt.Before(e.Expires) {
		r.bury(ctx, e, ErrExpired, status, err)
		return
	}
	if retryAt.After(now) {
		r.block(e.Key, retryAt)
	}
	r.write(ctx, e)
	r.count(func(c *ReplayResult) { c.Rescheduled++ })
	p.outboxEvent(ctx, EventReplayed, e, nil, err, status)
}

// bury marks e dead: it stays in the store, for an operator to look at,
// revive or drop.
func (r *replayPass) bury(ctx context.Context, e *outbox.Entry, reason error, status int, err error) {
	e.Dead = true
	if status != 0 || err != nil {
		e.LastStatus, e.LastError = status, ""
		if err != nil {
			e.LastError = r.redactErr(err, e)
		}
	}
	if reason == ErrExpired && e.LastError == "" && e.LastStatus == 0 {
		e.LastError = ErrExpired.Error()
	}
	r.write(ctx, e)
	r.count(func(c *ReplayResult) { c.Dead++ })
	r.p.outboxEvent(ctx, EventDead, e, reason, err, status)
}

// redactErr is err's text with the secrets of e's URL redacted: the
// store's entries are shown by heed outbox.
func (r *replayPass) redactErr(err error, e *outbox.Entry) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Error() // redacted already
	}
	return redactText(err.Error(), entryURL(e), r.p.secretPaths)
}
