package shed_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/heed-go/heed/shed"
	"github.com/heed-go/heed/tier"
)

func ExampleNew() {
	// The defaults learn the limit; this one is fixed at one request, with
	// no queue and no jitter, to show a shed response.
	s, err := shed.New(shed.Config{MaxLimit: 1, MaxQueue: -1, RetryAfterJitter: -1})
	if err != nil {
		log.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	report := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		fmt.Fprintln(w, "report")
	})
	// Inside tier.Middleware: a request's time in the queue counts against
	// its caller's Heed-Timeout.
	h := tier.Middleware(s.Handler(report))

	// One request takes the only slot...
	first := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/report", nil))
		first <- w.Code
	}()
	<-entered

	// ...so the next is shed at once, and told when to come back.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/report", nil))
	fmt.Println(w.Code, w.Header().Get("Retry-After"), w.Header().Get("Content-Type"))
	close(release)
	fmt.Println(<-first)

	// A request whose caller has no time left is not started.
	r := httptest.NewRequest(http.MethodGet, "/report", nil)
	r.Header.Set(tier.HeaderTimeout, "0")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Print(w.Code, " ", w.Body)
	// Output:
	// 503 1 application/problem+json
	// 200
	// 503 {"type":"https://pkg.go.dev/github.com/heed-go/heed/shed#ProblemDeadline","title":"Deadline passed","status":503,"detail":"The caller's deadline passed before the request could start; it was not started."}
}
