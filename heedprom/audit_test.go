package heedprom_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heed-go/heed/audit"
	"github.com/heed-go/heed/heedprom"
	"github.com/heed-go/heed/heedtest"
)

func TestWatchAudit(t *testing.T) {
	a := audit.New(audit.Config{Clock: heedtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))})
	for _, kv := range [][]string{
		{"X-Envoy-Attempt-Count", "1"},
		{"X-Envoy-Attempt-Count", "2"},
		{"Heed-Attempt", "2", "X-Envoy-Attempt-Count", "1"},
		{"Heed-Attempt", "2", "X-Envoy-Attempt-Count", "2"},
		{"Amz-Sdk-Request", "attempt=1; max=3"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for i := 0; i < len(kv); i += 2 {
			r.Header.Set(kv[i], kv[i+1])
		}
		a.Record(r)
	}
	m := heedprom.New()
	m.WatchAudit(a)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	want := `
# HELP heed_audit_requests_total Requests the audited server received, by caller class.
# TYPE heed_audit_requests_total counter
heed_audit_requests_total{class="default"} 5
# HELP heed_audit_first_attempts_total Requests no retry marker called a retry: one per call that reached the server. requests_total / first_attempts_total is the retry fan-out.
# TYPE heed_audit_first_attempts_total counter
heed_audit_first_attempts_total{class="default"} 2
# HELP heed_audit_retries_total Requests a layer's retry marker called a retry (attempt 2 or more), by layer: heed, envoy, grpc, aws, or one's own. A request two layers retried counts under each.
# TYPE heed_audit_retries_total counter
heed_audit_retries_total{class="default",layer="aws"} 0
heed_audit_retries_total{class="default",layer="envoy"} 2
heed_audit_retries_total{class="default",layer="grpc"} 0
heed_audit_retries_total{class="default",layer="heed"} 2
# HELP heed_audit_max_position Highest product of one request's attempt numbers across layers in the auditor's window: the stack lets one call make at least this many requests.
# TYPE heed_audit_max_position gauge
heed_audit_max_position{class="default"} 4
# HELP heed_audit_max_declared_attempts Most attempts the layer declared it makes (amz-sdk-request max=M) in the auditor's window; absent when it does not say.
# TYPE heed_audit_max_declared_attempts gauge
heed_audit_max_declared_attempts{class="default",layer="aws"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "heed_audit_requests_total", "heed_audit_first_attempts_total", "heed_audit_retries_total", "heed_audit_max_position", "heed_audit_max_declared_attempts"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("%d series, %v", n, err)
	}
}
