package heedprom_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heed-go/heed/heedprom"
)

// The alerting rules and the dashboard in docs/observability refer only
// to metrics the collector exports, and the dashboard shows every one.
//
// These checks read the metric names in the assets as words; that every
// rule and query also parses, by Prometheus's own rule and PromQL parsers,
// is checked in the bench module (bench/promassets_test.go), so that
// heedprom's module graph, and its users', does without
// github.com/prometheus/prometheus.

const (
	alertsFile    = "../docs/observability/heed-alerts.yml"
	dashboardFile = "../docs/observability/heed-dashboard.json"
)

// exported returns the names of every series the collector can export: its
// metric names, and for histograms (named _seconds) their _bucket, _sum
// and _count series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc, 100)
	heedprom.New().Describe(ch)
	close(ch)
	fq := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %v", d)
		}
		names[m[1]] = true
		if strings.HasSuffix(m[1], "_seconds") {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+s] = true
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d names described", len(names))
	}
	return names
}

// metricWord matches a name with the collector's prefix.
var metricWord = regexp.MustCompile(`\bheed_[a-z_]+\b`)

// metricWords returns the names with the collector's prefix in s.
func metricWords(t *testing.T, s string) []string {
	t.Helper()
	out := metricWord.FindAllString(s, -1)
	if len(out) == 0 {
		t.Errorf("%q names no metric", s)
	}
	return out
}

func TestAlertingRules(t *testing.T) {
	names := exported(t)
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	rules := string(raw)
	for _, n := range metricWords(t, rules) {
		if !names[n] {
			t.Errorf("the rules use %s, which the collector does not export", n)
		}
	}
	alert := regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`)
	alerts := map[string]bool{}
	for _, m := range alert.FindAllStringSubmatch(rules, -1) {
		alerts[m[1]] = true
	}
	for _, a := range []string{"HeedRetryRatioHigh", "HeedBreakerOpenTooLong", "HeedRetryBudgetExhausted", "HeedOutboxDeadEntries", "HeedOutboxStoreFailing", "HeedRetryFanOutHigh"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
	if got := strings.Count(rules, "summary: "); got != len(alerts) {
		t.Errorf("%d summaries for %d alerts", got, len(alerts))
	}
}

func TestDashboard(t *testing.T) {
	names := exported(t)
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range metricWords(t, tg.Expr) {
				used[n] = true
				if !names[n] {
					t.Errorf("panel %q uses %s, which the collector does not export", p.Title, n)
				}
			}
		}
	}
	lv := regexp.MustCompile(`^label_values\((\w+), key\)$`)
	for _, v := range dash.Templating.List {
		if v.Name == "key" {
			m := lv.FindStringSubmatch(v.Definition)
			if m == nil || !names[m[1]] {
				t.Errorf("variable key is defined by %q", v.Definition)
			}
		}
	}
	// Every metric family is on the dashboard.
	for n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if !used[n] && !used[base+"_bucket"] && !used[base] {
			t.Errorf("no panel shows %s", n)
		}
	}
}
