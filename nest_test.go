package heed_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/heedtest"
)

// countingRT is middleware between two heed layers that heed cannot see
// through.
type countingRT struct{ next http.RoundTripper }

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) { return c.next.RoundTrip(r) }

func TestNestedTransports(t *testing.T) {
	clk := heedtest.NewClock(t0).AutoAdvance()
	common := []heed.Option{heed.WithClock(clk), heed.WithLogger(nil)}
	inner, err := heed.New(common...) // 6 attempts
	if err != nil {
		t.Fatal(err)
	}

	t.Run("heed over heed: the outer retries, the inner tries once", func(t *testing.T) {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
		outer, err := heed.New(append(common, heed.WithBase(inner), heed.WithMaxAttempts(3))...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: outer}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if srv.Count() != 3 || len(heed.Attempts(resp)) != 3 {
			t.Fatalf("%d requests, %d attempts; want the outer's 3", srv.Count(), len(heed.Attempts(resp)))
		}
	})

	t.Run("heed over middleware over heed: never multiplied", func(t *testing.T) {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
		outer, err := heed.New(append(common, heed.WithBase(countingRT{inner}), heed.WithMaxAttempts(3))...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: outer}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// One layer's worth of attempts, not 3 x 6.
		if srv.Count() > heed.DefaultMaxAttempts {
			t.Fatalf("%d requests reached the server", srv.Count())
		}
	})

	t.Run("heed client inside Do: Do retries, the client tries once", func(t *testing.T) {
		srv := heedtest.NewServer(t, []heedtest.Step{heedtest.Status(503)})
		c := &http.Client{Transport: inner}
		p := mustPolicy(t, append(common, heed.WithMaxAttempts(4))...)
		_, err := heed.Do(context.Background(), p, func(ctx context.Context) (string, error) {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			resp, err := c.Do(req)
			if err != nil {
				return "", err
			}
			if err := heed.CheckStatus(resp); err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		})
		if !errors.Is(err, heed.ErrAttemptsExhausted) || srv.Count() != 4 {
			t.Fatalf("err=%v after %d requests; want Do's 4", err, srv.Count())
		}
	})

	t.Run("Do inside Do runs once", func(t *testing.T) {
		p := mustPolicy(t, append(common, heed.WithMaxAttempts(3))...)
		calls := 0
		heed.Do(context.Background(), p, func(ctx context.Context) (int, error) {
			return heed.Do(ctx, p, func(context.Context) (int, error) {
				calls++
				return 0, &heed.StatusError{StatusCode: 503}
			})
		})
		if calls != 3 {
			t.Fatalf("%d calls, want 3", calls)
		}
	})
}
