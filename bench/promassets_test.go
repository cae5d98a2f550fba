package bench

import (
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// The alerting rules and the dashboard heedprom ships in
// docs/observability parse with Prometheus's own rule and PromQL parsers,
// and every query selects a metric. The check lives here, not in heedprom,
// so that github.com/prometheus/prometheus (a very large module) stays out
// of the module graph of heedprom's users; heedprom's own tests check that
// the metrics the assets name are the ones its collector exports, and that
// the alerts it documents are there.

// The assets, read where the repository keeps them.
const (
	alertsFile    = "../docs/observability/heed-alerts.yml"
	dashboardFile = "../docs/observability/heed-dashboard.json"
)

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
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rules do not parse: %v", errs)
	}
	rules := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			selectedMetrics(t, r.Expr)
			rules++
		}
	}
	if rules == 0 {
		t.Fatal("no rules")
	}
}

func TestPromDashboard(t *testing.T) {
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
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("the dashboard's queries select no metric")
	}
}
