package heedprom

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heed-go/heed/audit"
)

// WatchAudit adds an audit.Auditor whose counts are exported at every
// scrape: a server's view of the retry fan-out of the stack in front of it.
// Its classes are bounded by the Auditor (audit.Config.MaxClasses, the rest
// "other") and its layers by construction (heed, envoy, grpc, aws and at
// most 4 of one's own), so the series are too. Several Auditors are summed
// per class and layer (maxima: the highest).
func (c *Collector) WatchAudit(a *audit.Auditor) {
	c.audit.mu.Lock()
	c.audit.auditors = append(c.audit.auditors, a)
	c.audit.mu.Unlock()
}

// auditMetrics reads Auditors at scrape time. The counters are the
// Auditor's totals since it was made (they only grow); the gauges are the
// maxima of its sliding window. No fan-out ratio is exported: a ratio
// cannot be summed over the instances of a service, and a retry often
// lands on another instance than the attempt before it. Divide the summed
// counters in PromQL instead.
type auditMetrics struct {
	mu       sync.Mutex
	auditors []*audit.Auditor

	requests, first, retries, compound, marked, malformed *prometheus.Desc
	maxAttempt, maxDeclared, maxPosition                  *prometheus.Desc
}

func (m *auditMetrics) init(ns string) {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_audit_"+name, help, labels, nil)
	}
	m.requests = desc("requests_total", "Requests the audited server received, by caller class.", "class")
	m.first = desc("first_attempts_total", "Requests no retry marker called a retry: one per call that reached the server. requests_total / first_attempts_total is the retry fan-out.", "class")
	m.retries = desc("retries_total", "Requests a layer's retry marker called a retry (attempt 2 or more), by layer: heed, envoy, grpc, aws, or one's own. A request two layers retried counts under each.", "class", "layer")
	m.compound = desc("compound_retries_total", "Requests two or more layers called a retry: retries of retries, the layers multiplying.", "class")
	m.marked = desc("marked_total", "Requests carrying a valid retry marker of the layer, first attempts included.", "class", "layer")
	m.malformed = desc("malformed_markers_total", "Retry markers ignored: not a number, out of range, repeated or inconsistent.", "class", "layer")
	m.maxAttempt = desc("max_attempt", "Highest attempt number the layer's markers carried in the auditor's window (0: none).", "class", "layer")
	m.maxDeclared = desc("max_declared_attempts", "Most attempts the layer declared it makes (amz-sdk-request max=M) in the auditor's window; absent when it does not say.", "class", "layer")
	m.maxPosition = desc("max_position", "Highest product of one request's attempt numbers across layers in the auditor's window: the stack lets one call make at least this many requests.", "class")
}

func (m *auditMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.requests, m.first, m.retries, m.compound, m.marked, m.malformed, m.maxAttempt, m.maxDeclared, m.maxPosition} {
		ch <- d
	}
}

type auditKey struct{ class, layer string }

// auditSums merges the snapshots of several Auditors.
type auditSums struct {
	requests, first, compound, maxPosition          map[string]int64
	retries, marked, malformed, maxAttempt, maxDecl map[auditKey]int64
}

func (m *auditMetrics) collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	auditors := append([]*audit.Auditor(nil), m.auditors...)
	m.mu.Unlock()
	if len(auditors) == 0 {
		return
	}
	s := auditSums{
		requests: map[string]int64{}, first: map[string]int64{}, compound: map[string]int64{}, maxPosition: map[string]int64{},
		retries: map[auditKey]int64{}, marked: map[auditKey]int64{}, malformed: map[auditKey]int64{},
		maxAttempt: map[auditKey]int64{}, maxDecl: map[auditKey]int64{},
	}
	for _, a := range auditors {
		for _, c := range a.Snapshot().Classes {
			t, w := c.Total, c.Window
			s.requests[c.Class] += t.Requests
			s.first[c.Class] += t.First
			s.compound[c.Class] += t.Compound
			s.maxPosition[c.Class] = max(s.maxPosition[c.Class], w.MaxPosition)
			for i, l := range t.Layers {
				k := auditKey{c.Class, l.Layer}
				s.retries[k] += l.Retries
				s.marked[k] += l.Marked
				s.malformed[k] += l.Malformed
				s.maxAttempt[k] = max(s.maxAttempt[k], w.Layers[i].MaxAttempt)
				s.maxDecl[k] = max(s.maxDecl[k], w.Layers[i].MaxDeclared)
			}
		}
	}
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v), labels...)
	}
	for _, class := range sortedKeys(s.requests) {
		emit(m.requests, prometheus.CounterValue, s.requests[class], class)
		emit(m.first, prometheus.CounterValue, s.first[class], class)
		emit(m.compound, prometheus.CounterValue, s.compound[class], class)
		emit(m.maxPosition, prometheus.GaugeValue, s.maxPosition[class], class)
	}
	for k, v := range s.retries {
		emit(m.retries, prometheus.CounterValue, v, k.class, k.layer)
		emit(m.marked, prometheus.CounterValue, s.marked[k], k.class, k.layer)
		emit(m.malformed, prometheus.CounterValue, s.malformed[k], k.class, k.layer)
		emit(m.maxAttempt, prometheus.GaugeValue, s.maxAttempt[k], k.class, k.layer)
		if d := s.maxDecl[k]; d > 0 {
			emit(m.maxDeclared, prometheus.GaugeValue, d, k.class, k.layer)
		}
	}
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
