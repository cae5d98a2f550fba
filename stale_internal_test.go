package heed

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Under a flood of distinct URLs the store never outgrows its bound, and
// it keeps the most recently used entries.
func TestStaleStoreBound(t *testing.T) {
	const bound = 64 << 10
	s := newStaleStore(StaleConfig{MaxBytes: bound, MaxEntryBytes: 8 << 10, MaxStale: time.Hour})
	now := time.Date(2026, 3, 16, 15, 0, 0, 0, time.UTC)
	keep := func(url string, size int) {
		req, _ := http.NewRequest("GET", url, nil)
		body := strings.Repeat("x", size)
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader(body))}
		s.keep(req, resp, now)
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	found := func(url string) bool {
		req, _ := http.NewRequest("GET", url, nil)
		_, _, ok := s.lookup(req, now)
		return ok
	}
	keep("http://api.test/pinned", 1000)
	for i := range 10_000 {
		keep(fmt.Sprintf("http://api.test/items/%d", i), 500+i%3000)
		if i%10 == 0 && !found("http://api.test/pinned") { // used often: stays
			t.Fatalf("the entry in use was evicted after %d others", i)
		}
		if used := s.bytesUsed(); used > bound {
			t.Fatalf("store holds %d bytes after %d URLs, bound %d", used, i+1, bound)
		}
	}
	if found("http://api.test/items/0") {
		t.Error("the least recently used entry survived the flood")
	}
	if !found("http://api.test/items/9999") {
		t.Error("the newest entry is missing")
	}
	if used := s.bytesUsed(); used < bound/2 {
		t.Errorf("store holds only %d bytes of %d", used, bound)
	}
	// An entry past MaxEntryBytes is not kept.
	keep("http://api.test/huge", 9<<10)
	if found("http://api.test/huge") {
		t.Error("an entry past MaxEntryBytes was kept")
	}
	// Replacing a variant frees the old one's bytes.
	before := s.bytesUsed()
	keep("http://api.test/items/9999", 500+9999%3000)
	if s.bytesUsed() != before {
		t.Errorf("storing the same entry again changed the size from %d to %d", before, s.bytesUsed())
	}
}

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 3, 16, 15, 0, 0, 0, time.UTC)
	date := now.Add(-30 * time.Second).Format(http.TimeFormat)
	for _, tc := range []struct {
		h             http.Header
		age, lifetime time.Duration
	}{
		{http.Header{}, 0, 0},
		{http.Header{"Cache-Control": {"public, max-age=120"}}, 0, 2 * time.Minute},
		{http.Header{"Cache-Control": {`max-age="60"`}, "Age": {"10"}}, 10 * time.Second, time.Minute},
		{http.Header{"Date": {date}, "Age": {"10"}}, 30 * time.Second, 0},
		{http.Header{"Date": {date}, "Expires": {now.Add(time.Minute).Format(http.TimeFormat)}}, 30 * time.Second, 90 * time.Second},
		{http.Header{"Cache-Control": {"max-age=-5"}, "Age": {"junk"}}, 0, 0},
	} {
		age, lifetime := freshness(tc.h, now)
		if age != tc.age || lifetime != tc.lifetime {
			t.Errorf("%v: age %v lifetime %v, want %v %v", tc.h, age, lifetime, tc.age, tc.lifetime)
		}
	}
}
