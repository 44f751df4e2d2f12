package validate

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`\bdata_api_[a-zA-Z0-9_:]+`)

// serviceMetrics returns every data_api_ name in the service's api package.
func serviceMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "api", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			names[m] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("found no data_api_ metric in api/*.go")
	}
	return names
}

// unknownMetrics returns the data_api_ names in text that the service does
// not export (a histogram's _bucket, _count and _sum count as its name; a
// counter, named _total, has none).
func unknownMetrics(text string, known map[string]bool) []string {
	var out []string
	for _, m := range metricName.FindAllString(text, -1) {
		base := m
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && known[b] && !strings.HasSuffix(b, "_total") {
				base = b
			}
		}
		if !known[base] {
			out = append(out, m)
		}
	}
	return out
}

func TestUnknownMetrics(t *testing.T) {
	known := map[string]bool{"data_api_consents_total": true, "data_api_http_request_duration_seconds": true}
	for text, want := range map[string]string{
		`rate(data_api_consents_total[5m])`:                              "",
		`data_api_http_request_duration_seconds_bucket{le="0.1"}`:        "",
		`rate(data_api_consent_total[5m])`:                               "data_api_consent_total",
		`data_api_consents_total_bucket`:                                 "data_api_consents_total_bucket",
		`data_api_http_request_duration_seconds_count / data_api_ready2`: "data_api_ready2",
	} {
		if got := strings.Join(unknownMetrics(text, known), " "); got != want {
			t.Errorf("unknownMetrics(%s) = %q, want %q", text, got, want)
		}
	}
}

func TestAlertsNameExportedMetrics(t *testing.T) {
	known := serviceMetrics(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if bad := unknownMetrics(string(b), known); len(bad) > 0 {
		t.Errorf("alerts.yml names metrics the service does not export: %v", bad)
	}
}

// dashboard is the part of Grafana's dashboard model these checks read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource datasource               `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// grafanaVars are Grafana's variables in the queries, and what promtool
// reads in their place.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$job", ".+", "$instance", ".+")

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "data-api.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error(`no "datasource" variable of type datasource for prometheus`)
	}

	known := serviceMetrics(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	ids := map[int]bool{}
	var boxes []panel
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		for _, q := range boxes {
			if overlap(p, q) {
				t.Errorf("panels %q and %q overlap", p.Title, q.Title)
			}
		}
		boxes = append(boxes, p)
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %q, want the variable ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Datasource.UID != "${datasource}" || q.Expr == "" {
				t.Errorf("panel %q query %s: datasource %q, expr %q", p.Title, q.RefID, q.Datasource.UID, q.Expr)
			}
			if bad := unknownMetrics(q.Expr, known); len(bad) > 0 {
				t.Errorf("panel %q names metrics the service does not export: %v", p.Title, bad)
			}
			expr, err := json.Marshal(grafanaVars.Replace(q.Expr))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&rules, "      - record: dashboard:panel_%d_%s\n        expr: %s\n", p.ID, q.RefID, expr)
		}
	}

	// Every query must parse as PromQL: promtool checks them as recording
	// rules. CI installs promtool; elsewhere the check is skipped, loudly.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (Debian: apt-get install prometheus)")
		}
		t.Skip("promtool is not installed: the dashboard's queries are not parsed (Debian: apt-get install prometheus)")
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

func overlap(a, b panel) bool {
	return a.GridPos.X < b.GridPos.X+b.GridPos.W && b.GridPos.X < a.GridPos.X+a.GridPos.W &&
		a.GridPos.Y < b.GridPos.Y+b.GridPos.H && b.GridPos.Y < a.GridPos.Y+a.GridPos.H
}
