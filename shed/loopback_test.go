package shed_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/heed-go/heed/shed"
	"github.com/heed-go/heed/tier"
)

// TestShedResponseOverLoopback checks the shed responses as a client on
// the wire sees them: status, fields, and the problem-details body.
func TestShedResponseOverLoopback(t *testing.T) {
	g := newGate()
	cfg := fixed(1)
	cfg.MaxQueue = -1
	srv := httptest.NewServer(tier.Middleware(mustNew(t, cfg).Handler(g)))
	defer srv.Close()
	client := srv.Client()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(g.release)
	wg.Go(func() { // takes the only slot
		if resp, err := client.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	})
	<-g.entered

	get := func(kv ...string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/items?id=7", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			req.Header.Set(kv[i], kv[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var problem map[string]any
		if err := json.Unmarshal(body, &problem); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		return resp, problem
	}

	// Overloaded: 503, Retry-After, a problem of type ProblemOverloaded.
	resp, problem := get()
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	switch {
	case resp.StatusCode != http.StatusServiceUnavailable:
		t.Errorf("status %d, want 503", resp.StatusCode)
	case err != nil || ra < 1 || ra > 3:
		t.Errorf("Retry-After %q, want 1 to 3 seconds", resp.Header.Get("Retry-After"))
	case resp.Header.Get("Content-Type") != "application/problem+json":
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	case resp.Header.Get("Cache-Control") != "no-store":
		t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	case resp.Header.Get(tier.HeaderRetried) != "":
		t.Errorf("%s: %q on a shed response", tier.HeaderRetried, resp.Header.Get(tier.HeaderRetried))
	case problem["type"] != shed.ProblemOverloaded || problem["status"] != 503.0 || problem["title"] != "Server overloaded" ||
		problem["detail"] == nil || problem["retry_after"] != float64(ra):
		t.Errorf("problem %v", problem)
	}

	// No time left: 503 without Retry-After, a problem of type
	// ProblemDeadline.
	resp, problem = get(tier.HeaderTimeout, "0")
	switch {
	case resp.StatusCode != http.StatusServiceUnavailable:
		t.Errorf("no time left: status %d, want 503", resp.StatusCode)
	case resp.Header.Get("Retry-After") != "":
		t.Errorf("no time left: Retry-After %q", resp.Header.Get("Retry-After"))
	case resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get(tier.HeaderRetried) != "":
		t.Errorf("no time left: header %v", resp.Header)
	case problem["type"] != shed.ProblemDeadline || problem["status"] != 503.0 || problem["retry_after"] != nil:
		t.Errorf("no time left: problem %v", problem)
	}
}
