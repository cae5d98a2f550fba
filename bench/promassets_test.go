package bench

import (
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/heed-go/heed/heedprom"
)

// The alerting rules and the dashboard heedprom ships in
// docs/observability parse with Prometheus's own rule and PromQL parsers,
// and refer only to series heedprom's collector exports. The check lives
// here, not in heedprom, so that github.com/prometheus/prometheus (a very
// large module) stays out of the module graph of heedprom's users; heedprom's
// own tests keep a parser-free check of the same assets.

// The assets, read where the repository keeps them.
const (
	alertsFile    = "../docs/observability/heed-alerts.yml"
	dashboardFile = "../docs/observability/heed-dashboard.json"
)

// exportedSeries returns the names of every series heedprom's collector can
// export: its metric names, and for histograms (named _seconds) their
// _bucket, _sum and _count series.
func exportedSeries(t *testing.T) map[string]bool {
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

// selectedMetrics parses a PromQL expression and returns the metrics it
// selects.
func selectedMetrics(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("%q does not parse: %v", expr, err)
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%q selects no metric", expr)
	}
	return out
}

func TestPromAlertingRules(t *testing.T) {
	names := exportedSeries(t)
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rules do not parse: %v", errs)
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Annotations["summary"] == "" {
				t.Errorf("%s has no summary", r.Alert)
			}
			for _, n := range selectedMetrics(t, r.Expr) {
				if !names[n] {
					t.Errorf("%s uses %s, which the collector does not export", r.Alert, n)
				}
			}
		}
	}
	for _, a := range []string{"HeedRetryRatioHigh", "HeedBreakerOpenTooLong", "HeedRetryBudgetExhausted"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
}

func TestPromDashboard(t *testing.T) {
	names := exportedSeries(t)
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	// Grafana's variables, as a query would be sent.
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$key", ".*")
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range selectedMetrics(t, grafana.Replace(tg.Expr)) {
				used[n] = true
				if !names[n] {
					t.Errorf("panel %q uses %s, which the collector does not export", p.Title, n)
				}
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("the dashboard's queries select no metric")
	}
}
