// prom: the Prometheus project's own parsers and linters for danm's tests (tests/harness/prom.ts builds and runs it).
//
//	prom metrics < exposition     parse the text format (expfmt), lint it (promlint, what `promtool check metrics`
//	                              runs), print the families as JSON; exit 1 if it does not parse
//	prom rules FILE...            parse rule files as Prometheus loads them (rulefmt + the PromQL parser, what
//	                              `promtool check rules` runs), print every rule with the metrics it reads as JSON
//	prom exprs < ["expr", ...]    parse PromQL expressions (a dashboard's), print the metrics each reads as JSON
//	prom eval RULES AT < series   load series in promqltest's `load` notation, evaluate every alert's expression
//	                              at AT (a duration after the start), print the alerts that have results (label
//	                              sets and values) as JSON
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
)

type sample struct {
	Labels  map[string]string `json:"labels"`
	Value   *float64          `json:"value,omitempty"`
	Count   *uint64           `json:"count,omitempty"`
	Sum     *float64          `json:"sum,omitempty"`
	Buckets map[string]uint64 `json:"buckets,omitempty"`
}

type family struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Help    string   `json:"help"`
	Samples []sample `json:"samples"`
}

type lint struct {
	Metric string `json:"metric"`
	Text   string `json:"text"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func out(v any) {
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(v); err != nil {
		fail("encode: %v", err)
	}
}

func metrics() {
	text, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("read: %v", err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(text)))
	if err != nil {
		fail("parse: %v", err)
	}
	problems, err := promlint.New(strings.NewReader(string(text))).Lint()
	if err != nil {
		fail("lint: %v", err)
	}
	fams := []family{}
	for _, mf := range mfs {
		f := family{Name: mf.GetName(), Type: strings.ToLower(mf.GetType().String()), Help: mf.GetHelp(), Samples: []sample{}}
		for _, m := range mf.GetMetric() {
			s := sample{Labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v := m.GetCounter().GetValue()
				s.Value = &v
			case dto.MetricType_GAUGE:
				v := m.GetGauge().GetValue()
				s.Value = &v
			case dto.MetricType_UNTYPED:
				v := m.GetUntyped().GetValue()
				s.Value = &v
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				c, sum := h.GetSampleCount(), h.GetSampleSum()
				s.Count, s.Sum, s.Buckets = &c, &sum, map[string]uint64{}
				for _, b := range h.GetBucket() {
					s.Buckets[fmt.Sprint(b.GetUpperBound())] = b.GetCumulativeCount()
				}
			default:
				fail("%s: unexpected type %s", mf.GetName(), mf.GetType())
			}
			f.Samples = append(f.Samples, s)
		}
		fams = append(fams, f)
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].Name < fams[j].Name })
	lints := []lint{}
	for _, pr := range problems {
		lints = append(lints, lint{Metric: pr.Metric, Text: pr.Text})
	}
	out(map[string]any{"families": fams, "lint": lints})
}

var promql = parser.NewParser(parser.Options{})

// metricNames lists the metric names an expression selects, sorted.
func metricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			set[vs.Name] = true
		}
		return nil
	})
	names := []string{}
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

type rule struct {
	Group   string            `json:"group"`
	Alert   string            `json:"alert,omitempty"`
	Record  string            `json:"record,omitempty"`
	Expr    string            `json:"expr"`
	For     string            `json:"for,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Metrics []string          `json:"metrics"`
}

func loadRules(files []string) []rule {
	rules := []rule{}
	for _, file := range files {
		groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, nil)
		if len(errs) > 0 {
			msgs := []string{}
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			fail("%s", strings.Join(msgs, "\n"))
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				names, err := metricNames(r.Expr)
				if err != nil {
					fail("%s: %s: %v", file, r.Expr, err)
				}
				rules = append(rules, rule{
					Group: g.Name, Alert: r.Alert, Record: r.Record, Expr: r.Expr,
					For: r.For.String(), Labels: r.Labels, Metrics: names,
				})
			}
		}
	}
	return rules
}

func exprs() {
	var list []string
	if err := json.NewDecoder(os.Stdin).Decode(&list); err != nil {
		fail("read: %v", err)
	}
	res := []map[string]any{}
	for _, e := range list {
		names, err := metricNames(e)
		if err != nil {
			fail("%s: %v", e, err)
		}
		res = append(res, map[string]any{"expr": e, "metrics": names})
	}
	out(res)
}

func eval(file, at string) {
	series, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("read: %v", err)
	}
	offset, err := model.ParseDuration(at)
	if err != nil {
		fail("AT: %v", err)
	}
	ll, err := promqltest.NewLazyLoader(string(series), promqltest.LazyLoaderOpts{EnableAtModifier: true, EnableNegativeOffset: true})
	if err != nil {
		fail("series: %v", err)
	}
	defer ll.Close()
	ts := time.Unix(0, 0).UTC().Add(time.Duration(offset))
	ll.WithSamplesTill(ts, func(err error) {
		if err != nil {
			fail("load: %v", err)
		}
	})
	type result struct {
		Labels map[string]string `json:"labels"`
		Value  float64           `json:"value"`
	}
	firing := map[string][]result{}
	for _, r := range loadRules([]string{file}) {
		if r.Alert == "" {
			continue
		}
		q, err := ll.QueryEngine().NewInstantQuery(context.Background(), ll.Queryable(), nil, r.Expr, ts)
		if err != nil {
			fail("%s: %v", r.Alert, err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			fail("%s: %v", r.Alert, res.Err)
		}
		vec, err := res.Vector()
		if err != nil {
			fail("%s: %v", r.Alert, err)
		}
		for _, s := range vec {
			firing[r.Alert] = append(firing[r.Alert], result{Labels: s.Metric.Map(), Value: s.F})
		}
		q.Close()
	}
	out(firing)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: prom metrics|rules FILE...|exprs|eval RULES AT")
	}
	switch os.Args[1] {
	case "metrics":
		metrics()
	case "rules":
		out(loadRules(os.Args[2:]))
	case "exprs":
		exprs()
	case "eval":
		if len(os.Args) != 4 {
			fail("usage: prom eval RULES AT < series")
		}
		eval(os.Args[2], os.Args[3])
	default:
		fail("unknown command %q", os.Args[1])
	}
}
