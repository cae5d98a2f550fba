package heedotel

import (
	"errors"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/internal/redact"
	"github.com/heed-go/heed/internal/vocab"
)

// heed's own attributes, for what the HTTP conventions do not cover.
const (
	attrAttempt     = attribute.Key("heed.attempt")
	attrHedge       = attribute.Key("heed.hedge")
	attrWait        = attribute.Key("heed.wait")        // seconds
	attrWaitSource  = attribute.Key("heed.wait.source") // heed.WaitSource's String
	attrReason      = attribute.Key("heed.reason")
	attrRetryAt     = attribute.Key("heed.retry_at") // RFC 3339, UTC
	attrAge         = attribute.Key("heed.age")      // seconds
	attrDuration    = attribute.Key("heed.duration") // seconds
	attrError       = attribute.Key("heed.error")
	attrKey         = attribute.Key("heed.key")
	attrBreakerFrom = attribute.Key("heed.breaker.from")
	attrBreakerTo   = attribute.Key("heed.breaker.to")
	attrOutboxEntry = attribute.Key("heed.outbox.entry")
	attrNextAt      = attribute.Key("heed.outbox.next_at") // RFC 3339, UTC
)

func seconds(k attribute.Key, d time.Duration) attribute.KeyValue { return k.Float64(d.Seconds()) }

func timestamp(k attribute.Key, t time.Time) attribute.KeyValue {
	return k.String(t.UTC().Format(time.RFC3339Nano))
}

func reason(err error) attribute.KeyValue {
	if err == nil {
		return attrReason.String("")
	}
	return attrReason.String(vocab.Reason(err)) // the names of heed's logs and metrics
}

// knownMethods are the methods semconv names; others are "_OTHER", so a
// client sending arbitrary methods cannot blow up span names.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true, "QUERY": true,
}

// requestAttrs appends the HTTP client attributes of a request to a. It
// returns the method for span names: empty when semconv calls it _OTHER.
func requestAttrs(method string, u *url.URL, a []attribute.KeyValue) (string, []attribute.KeyValue) {
	if method == "" {
		method = "GET" // as net/http sends it
	}
	if knownMethods[method] {
		a = append(a, semconv.HTTPRequestMethodKey.String(method))
	} else {
		a = append(a, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method))
		method = ""
	}
	if u == nil {
		return method, a
	}
	// Userinfo and query values often carry credentials: never record them.
	a = append(a, semconv.URLFull(redact.URL(u)))
	if host := u.Hostname(); host != "" {
		a = append(a, semconv.ServerAddress(host))
	}
	if port := serverPort(u); port > 0 {
		a = append(a, semconv.ServerPort(port))
	}
	return method, a
}

// serverPort is the URL's port, or its scheme's default.
func serverPort(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return 0
		}
		return n
	}
	switch u.Scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}

// attemptAttrs are an attempt's attributes, and its method for its span's
// name (see requestAttrs).
func attemptAttrs(e heed.Event) (string, []attribute.KeyValue) {
	a := make([]attribute.KeyValue, 0, 9)
	var method string
	if e.URL != nil {
		method, a = requestAttrs(e.Method, e.URL, a)
	}
	if e.Status != 0 {
		a = append(a, semconv.HTTPResponseStatusCode(e.Status))
	}
	if et := statusErrorType(e.Status); et != "" {
		a = append(a, semconv.ErrorTypeKey.String(et))
	} else if e.Err != nil {
		et := string(e.ErrorKind)
		if et == "" {
			et = semconv.ErrorTypeOther.Value.AsString()
		}
		a = append(a, semconv.ErrorTypeKey.String(et))
	}
	// Semconv sets the resend count on resends only.
	if e.Attempt > 1 {
		a = append(a, semconv.HTTPRequestResendCount(e.Attempt-1))
	}
	if e.Hedge > 0 {
		a = append(a, attrHedge.Int(e.Hedge))
	}
	return method, a
}

// statusErrorType is error.type for a status: the code itself from 400 up,
// as semconv says, and empty below.
func statusErrorType(status int) string {
	if status < 400 {
		return ""
	}
	return strconv.Itoa(status)
}

// callErrorType is error.type for a call that ended with err: the last
// status, else the last transport error's kind, else heed's reason.
func callErrorType(err error) string {
	var he *heed.Error
	if errors.As(err, &he) {
		var se *heed.StatusError
		if errors.As(he.Err, &se) {
			return strconv.Itoa(se.StatusCode)
		}
		if n := len(he.Attempts); n > 0 && he.Attempts[n-1].Kind != heed.KindNone {
			return string(he.Attempts[n-1].Kind)
		}
		return vocab.Reason(he.Reason)
	}
	return semconv.ErrorType(err).Value.AsString()
}
