package heed_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

func autoPolicy(t *testing.T, opts ...heed.Option) (*heed.Policy, *heedtest.Clock) {
	t.Helper()
	clk := heedtest.NewClock(t0).AutoAdvance()
	return mustPolicy(t, append([]heed.Option{heed.WithClock(clk), heed.WithLogger(nil)}, opts...)...), clk
}

func TestDoRetriesTransientErrors(t *testing.T) {
	p, clk := autoPolicy(t)
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	calls := 0
	v, err := heed.Do(context.Background(), p, func(ctx context.Context) (string, error) {
		calls++
		switch calls {
		case 1:
			return "", reset
		case 2:
			return "", heed.Retryable(errors.New("warming up"))
		}
		return "value", nil
	})
	if err != nil || v != "value" || calls != 3 {
		t.Fatalf("v=%q err=%v calls=%d", v, err, calls)
	}
	if clk.Now() == t0 {
		t.Fatal("Do did not wait between attempts")
	}
}

func TestDoStopsOnUnknownErrors(t *testing.T) {
	p, _ := autoPolicy(t)
	bug := errors.New("nil map write")
	calls := 0
	v, err := heed.Do(context.Background(), p, func(ctx context.Context) (int, error) {
		calls++
		return 7, bug
	})
	var he *heed.Error
	if !errors.As(err, &he) || !errors.Is(err, bug) || !errors.Is(err, heed.ErrNotRetryable) || calls != 1 || v != 7 {
		t.Fatalf("v=%d err=%v calls=%d", v, err, calls)
	}
	if len(he.Attempts) != 1 || he.Attempts[0].Err != bug {
		t.Fatalf("attempts %+v", he.Attempts)
	}
}

func TestDoHonoursStatusAndHints(t *testing.T) {
	p, clk := autoPolicy(t)
	calls := 0
	_, err := heed.Do(context.Background(), p, func(ctx context.Context) (struct{}, error) {
		calls++
		if calls == 1 {
			return struct{}{}, &heed.StatusError{StatusCode: 429, Header: http.Header{"Retry-After": {"12"}}}
		}
		if calls == 2 {
			return struct{}{}, heed.RetryableAfter(errors.New("queue full"), 3*time.Second)
		}
		return struct{}{}, &heed.StatusError{StatusCode: 404}
	})
	if !errors.Is(err, heed.ErrNotRetryable) || calls != 3 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
	var he *heed.Error
	errors.As(err, &he)
	if he.Attempts[0].Source != heed.SourceRetryAfter || he.Attempts[0].Wait < 12*time.Second {
		t.Fatalf("first wait %v from %v", he.Attempts[0].Wait, he.Attempts[0].Source)
	}
	if he.Attempts[1].Source != heed.SourceRetryAfter || he.Attempts[1].Wait < 3*time.Second {
		t.Fatalf("second wait %v from %v", he.Attempts[1].Wait, he.Attempts[1].Source)
	}
	if clk.Now().Sub(t0) < 15*time.Second {
		t.Fatalf("clock moved only %v", clk.Now().Sub(t0))
	}
}

func TestDoAttemptsExhausted(t *testing.T) {
	p, _ := autoPolicy(t, heed.WithMaxAttempts(4))
	calls := 0
	_, err := heed.Do(context.Background(), p, func(ctx context.Context) (int, error) {
		calls++
		return 0, &heed.StatusError{StatusCode: 503}
	})
	if !errors.Is(err, heed.ErrAttemptsExhausted) || calls != 4 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

// Cancelling the context ends the wait before a retry at once. The test
// cancels once Do is asleep on the fake clock (a timer pending), not after
// a real pause: on a loaded machine the call may not have reached its wait
// yet, and a cancel during the attempt ends the call with the attempt's
// error as its cause rather than context.Canceled.
func TestDoCancel(t *testing.T) {
	clk := heedtest.NewClock(t0)
	p := mustPolicy(t, heed.WithLogger(nil), heed.WithClock(clk))
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan error, 1)
	go func() {
		_, err := heed.Do(ctx, p, func(context.Context) (int, error) {
			calls++
			return 0, heed.RetryableAfter(errors.New("later"), 30*time.Second)
		})
		done <- err
	}()
	clk.BlockUntil(1) // Do waits for its retry; the fake time never gets there
	cancel()
	err := <-done
	if !errors.Is(err, heed.ErrCanceled) || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

func TestDoClassifier(t *testing.T) {
	errBusy := errors.New("busy")
	p, _ := autoPolicy(t, heed.WithClassifier(func(o heed.Outcome) heed.Verdict {
		if errors.Is(o.Err, errBusy) {
			return heed.VerdictRetry
		}
		return heed.VerdictDefault
	}))
	calls := 0
	_, err := heed.Do(context.Background(), p, func(context.Context) (int, error) {
		calls++
		if calls < 3 {
			return 0, errBusy
		}
		return 1, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

func TestDoNilPolicy(t *testing.T) {
	if _, err := heed.Do(context.Background(), nil, func(context.Context) (int, error) { return 0, nil }); err == nil {
		t.Fatal("nil policy accepted")
	}
}

// A Do call that succeeds reports its attempt and its end, as a request
// does, so metrics and traces count it.
func TestDoSuccessEvents(t *testing.T) {
	var kinds []heed.EventKind
	var done heed.Event
	hook := heed.HookFunc(func(_ context.Context, e heed.Event) {
		kinds = append(kinds, e.Kind)
		if e.Kind == heed.EventDone {
			done = e
		}
	})
	p, clk := autoPolicy(t, heed.WithHook(hook))
	calls := 0
	_, err := heed.Do(heed.Override(context.Background(), heed.Overrides{Key: "inventory"}), p, func(ctx context.Context) (int, error) {
		if calls++; calls == 1 {
			return 0, heed.Retryable(errors.New("busy"))
		}
		clk.Advance(time.Second)
		return 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []heed.EventKind{heed.EventAttempt, heed.EventRetry, heed.EventAttempt, heed.EventDone}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if done.Err != nil || done.Key != "inventory" || done.Attempt != 2 || done.Duration < time.Second {
		t.Errorf("done event %+v", done)
	}
}
