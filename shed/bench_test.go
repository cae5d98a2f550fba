package shed_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heed-go/heed/shed"
	"github.com/heed-go/heed/tier"
)

// The shedder's own cost per request: let through, and refused.
//
//	go test ./shed/ -run '^$' -bench . -benchmem

func BenchmarkAdmit(b *testing.B) {
	s, err := shed.New(shed.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := &sink{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkAdmitParallel(b *testing.B) {
	s, err := shed.New(shed.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		w := &sink{header: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}

func BenchmarkShed(b *testing.B) {
	s, err := shed.New(shed.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler(http.NotFoundHandler())
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(tier.HeaderTimeout, "0") // refused before it takes a slot
	w := &sink{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
