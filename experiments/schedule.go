package experiments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
)

// Schedule runs a suite (an experiment spec) repeatedly against the head
// of its base branch and compares each run with the last accepted
// baseline run.
type Schedule struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Cron is a cron expression with optional seconds field
	// ("0 30 2 * * *", "*/10 * * * *") or a descriptor ("@daily",
	// "@every 10m").
	Cron string         `json:"cron"`
	Spec ExperimentSpec `json:"spec"`
	// Metric is the measure watched for regressions, by its trec_eval
	// output name (e.g. "ndcg_cut_10"). Required: one of the measures
	// Spec.Metrics evaluates that comparisons test (not a count or
	// gm_map).
	Metric string `json:"metric"`
	// Alpha is the significance level of the regression test. Default 0.05.
	Alpha float64 `json:"alpha,omitempty"`
	// Threshold: a drop of the metric's mean larger than this is a
	// regression even when not significant. 0: only significant drops count.
	Threshold float64 `json:"threshold,omitempty"`
	// AutoAccept makes a run without regression the new baseline.
	AutoAccept bool `json:"auto_accept,omitempty"`
	// Webhook, if set, receives a POST of the Verdict JSON on a regression.
	// It must be an http or https URL; loopback, link-local, unspecified
	// and multicast targets are refused (when given, and on every
	// connection) unless the operator allows them (Config.WebhookAllow).
	Webhook string `json:"webhook,omitempty"`
	// Paused schedules do not fire.
	Paused bool `json:"paused,omitempty"`
	// BaselineRun is the accepted baseline run's id.
	BaselineRun string    `json:"baseline_run,omitempty"`
	LastRun     string    `json:"last_run,omitempty"`
	LastFired   time.Time `json:"last_fired,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	// Scopes of the creator; scheduled runs act with them, and only while
	// the creator's key (CreatedBy, when it names a key) is live.
	Scopes []Scope `json:"scopes"`
	// Error says why the scheduler paused the schedule (its creator's key
	// was revoked); "" when it did not.
	Error string `json:"error,omitempty"`
	// Correction adjusts the regression test's p-values for the number
	// of variants compared with the baseline (a sweep tests one
	// hypothesis per point): "holm" (family-wise error rate), "bh" (false
	// discovery rate) or "none". Default "holm".
	Correction evals.Adjustment `json:"correction,omitempty"`
}

// Verdict compares a scheduled run with its baseline.
type Verdict struct {
	Baseline   string `json:"baseline,omitempty"`
	Regression bool   `json:"regression"`
	// Reason says why the run as a whole is a regression (it failed);
	// each variant's verdict has its own.
	Reason   string           `json:"reason,omitempty"`
	Metric   string           `json:"metric"`
	Variants []VariantVerdict `json:"variants"`
	// Accepted is true when the run became the baseline.
	Accepted bool `json:"accepted"`
}

// VariantVerdict is one variant's verdict against the same-named variant
// of the baseline.
type VariantVerdict struct {
	Variant    string  `json:"variant"`
	Baseline   float64 `json:"baseline"`
	Current    float64 `json:"current"`
	Delta      float64 `json:"delta"`
	P          float64 `json:"p_value"`
	Regression bool    `json:"regression"`
	Reason     string  `json:"reason,omitempty"`
	// PAdjusted is P adjusted by Correction across the variants judged
	// together; the gate compares it, not P, with alpha.
	PAdjusted  float64          `json:"p_adjusted"`
	Correction evals.Adjustment `json:"correction,omitempty"`
}

// Gate is a regression gate on one measure, as schedules and
// `offshoot eval run --baseline` apply it. The zero value of each field
// takes the default named.
type Gate struct {
	// Metric is the watched measure (trec_eval name). Required.
	Metric string
	// Alpha is the significance level. Default 0.05.
	Alpha float64
	// Threshold: a drop of the mean larger than this is a regression
	// even when not significant. 0: only significant drops count.
	Threshold float64
	// Correction adjusts the variants' p-values as one family. Default
	// evals.AdjustHolm.
	Correction evals.Adjustment
}

// Judge returns the verdict of each variant, names[i] compared with its
// baseline as ms[i] (the comparison of g.Metric). The p-values of all of
// them are adjusted together by g.Correction; a variant regressed when its
// mean dropped with adjusted p below Alpha, or dropped by more than
// Threshold. An unknown correction, or names and ms of different
// lengths, is ErrInvalid. Pure; safe for concurrent use.
func (g Gate) Judge(names []string, ms []evals.MeasureComparison) ([]VariantVerdict, error) {
	if len(names) != len(ms) {
		return nil, invalid("variants", "%d names for %d comparisons", len(names), len(ms))
	}
	if g.Alpha == 0 {
		g.Alpha = 0.05
	}
	if g.Correction == "" {
		g.Correction = evals.AdjustHolm
	}
	ps := make([]float64, len(ms))
	for i, m := range ms {
		ps[i] = m.P
	}
	adj, err := evals.Adjust(g.Correction, ps)
	if err != nil {
		return nil, invalid("correction", "%v", err)
	}
	out := make([]VariantVerdict, len(ms))
	for i, m := range ms {
		vv := VariantVerdict{Variant: names[i], Baseline: m.MeanA, Current: m.MeanB, Delta: m.Delta, P: m.P,
			PAdjusted: adj[i], Correction: g.Correction}
		switch {
		case m.Delta < 0 && adj[i] < g.Alpha:
			vv.Regression, vv.Reason = true, fmt.Sprintf("significant drop (p=%.4g, %s-adjusted %.4g < %g)", m.P, g.Correction, adj[i], g.Alpha)
		case g.Threshold > 0 && -m.Delta > g.Threshold:
			vv.Regression, vv.Reason = true, fmt.Sprintf("drop %.4g > threshold %g", -m.Delta, g.Threshold)
		}
		out[i] = vv
	}
	return out, nil
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func scheduleKey(id string) []byte { return []byte("schedule/" + id) }

func (sc *Schedule) validate() error {
	if !identRE.MatchString(sc.Name) {
		return invalid("name", "must be 1-40 of a-z, 0-9, '-', '_'")
	}
	if _, err := cronParser.Parse(sc.Cron); err != nil {
		return invalid("cron", "%v", err)
	}
	if err := sc.Spec.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return invalid("spec."+fe.Field, "%s", fe.Reason)
		}
		return err
	}
	if err := sc.validateMetric(); err != nil {
		return err
	}
	if sc.Alpha == 0 {
		sc.Alpha = 0.05
	}
	if !(sc.Alpha > 0 && sc.Alpha < 1) {
		return invalid("alpha", "must be in (0, 1)")
	}
	if sc.Threshold < 0 {
		return invalid("threshold", "must not be negative")
	}
	if _, err := evals.Adjust(sc.Correction, nil); err != nil {
		return invalid("correction", "%v", err)
	}
	return nil
}

// validateMetric checks that Metric is a measure the valid Spec
// evaluates and a comparison tests: one a run can be judged on.
func (sc *Schedule) validateMetric() error {
	names, err := comparedMeasures(sc.Spec.Metrics)
	if err != nil {
		return invalid("spec.metrics", "%v", err)
	}
	if slices.Contains(names, sc.Metric) {
		return nil
	}
	switch {
	case len(names) == 0:
		return invalid("metric", "spec.metrics %v evaluates no measure a comparison tests (counts and gm_map are not)", sc.Spec.Metrics)
	case sc.Metric == "":
		return invalid("metric", "is required: one of the measures the spec evaluates, %s", strings.Join(names, ", "))
	}
	return invalid("metric", "%q: want a measure the spec evaluates and runs are compared on, one of %s (spec.metrics %v)",
		sc.Metric, strings.Join(names, ", "), sc.Spec.Metrics)
}

// checkSchedule applies the server's policies to a valid schedule: its
// webhook must be one the webhook policy allows, its BEIR dataset must
// lie in the datasets directory (resolved in place), and what its spec
// names must exist as StartRun checks it (checkRunRefs).
func (s *Service) checkSchedule(ctx context.Context, sc *Schedule) error {
	if sc.Webhook != "" {
		if err := s.hooks.check(sc.Webhook); err != nil {
			return err
		}
	}
	err := s.resolveDataset(&sc.Spec.Dataset)
	if err == nil {
		err = s.checkRunRefs(ctx, &sc.Spec)
	}
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return invalid("spec."+fe.Field, "%s", fe.Reason)
		}
		return err
	}
	return nil
}

// CreateSchedule validates and stores a schedule (write scope on the
// spec's project). Its runs act with the creator's scopes.
func (s *Service) CreateSchedule(ctx context.Context, sc Schedule) (*Schedule, error) {
	err := func() error {
		if err := s.authorize(ctx, RoleWrite, sc.Spec.Project, ""); err != nil {
			return err // before validation, as StartRun
		}
		if err := sc.validate(); err != nil {
			return err
		}
		if err := s.checkSchedule(ctx, &sc); err != nil {
			return err
		}
		caller, _ := CallerFrom(ctx)
		sc.ID = "s" + newRunID(s.cfg.Now())
		sc.CreatedAt, sc.CreatedBy, sc.Scopes = s.cfg.Now(), caller.KeyID, caller.Scopes
		sc.BaselineRun, sc.LastRun, sc.LastFired = "", "", time.Time{}
		return s.putSchedule(&sc)
	}()
	s.record(ctx, "schedule.create", "schedule/"+sc.ID, sc.Name, err)
	if err != nil {
		return nil, err
	}
	s.rn.poke()
	return &sc, nil
}

// UpdateSchedule replaces a schedule's definition (name, cron, spec,
// metric, alpha, threshold, auto_accept, webhook, paused), keeping its
// baseline and history.
func (s *Service) UpdateSchedule(ctx context.Context, id string, upd Schedule) (*Schedule, error) {
	var out *Schedule
	err := s.audited(ctx, "schedule.update", "schedule/"+id, "", func() error {
		if err := s.authorize(ctx, RoleWrite, upd.Spec.Project, ""); err != nil {
			return err // before validation, as StartRun
		}
		if err := upd.validate(); err != nil {
			return err
		}
		if err := s.checkSchedule(ctx, &upd); err != nil {
			return err
		}
		return s.modifySchedule(ctx, id, func(sc *Schedule) error {
			if err := s.authorize(ctx, RoleWrite, sc.Spec.Project, ""); err != nil {
				return err
			}
			sc.Name, sc.Cron, sc.Spec, sc.Metric, sc.Alpha = upd.Name, upd.Cron, upd.Spec, upd.Metric, upd.Alpha
			sc.Threshold, sc.AutoAccept, sc.Webhook, sc.Paused = upd.Threshold, upd.AutoAccept, upd.Webhook, upd.Paused
			sc.Correction = upd.Correction
			out = sc
			return nil
		})
	})
	s.rn.poke()
	return out, err
}

// DeleteSchedule removes a schedule; its runs stay.
func (s *Service) DeleteSchedule(ctx context.Context, id string) error {
	return s.audited(ctx, "schedule.delete", "schedule/"+id, "", func() error {
		if _, err := s.GetSchedule(ctx, id); err != nil {
			return err
		}
		sc, _ := s.getSchedule(id)
		if err := s.authorize(ctx, RoleWrite, sc.Spec.Project, ""); err != nil {
			return err
		}
		return s.withDB(func(db *controldb.DB) error { return db.Delete(scheduleKey(id)) })
	})
}

// GetSchedule returns a schedule (read scope on its project).
func (s *Service) GetSchedule(ctx context.Context, id string) (*Schedule, error) {
	sc, err := s.getSchedule(id)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, RoleRead, sc.Spec.Project, ""); err != nil {
		return nil, err
	}
	return sc, nil
}

// ListSchedules lists the schedules the caller may read, by id.
func (s *Service) ListSchedules(ctx context.Context) ([]Schedule, error) {
	caller, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	all, err := s.allSchedules()
	if err != nil {
		return nil, err
	}
	out := []Schedule{}
	for _, sc := range all {
		if caller.Allows(RoleRead, sc.Spec.Project, "") {
			out = append(out, sc)
		}
	}
	return out, nil
}

// AcceptRun makes a finished run of the schedule its baseline.
func (s *Service) AcceptRun(ctx context.Context, scheduleID, runID string) (*Schedule, error) {
	var out *Schedule
	err := s.audited(ctx, "schedule.accept", "schedule/"+scheduleID, runID, func() error {
		sc, err := s.GetSchedule(ctx, scheduleID)
		if err != nil {
			return err
		}
		if err := s.authorize(ctx, RoleWrite, sc.Spec.Project, ""); err != nil {
			return err
		}
		r, err := s.getRun(runID)
		if err != nil {
			return err
		}
		if r.ScheduleID != scheduleID {
			return invalid("run_id", "run %s does not belong to schedule %s", runID, scheduleID)
		}
		if r.Status != StatusSucceeded && r.Status != StatusPartial {
			return fmt.Errorf("run %s is %s: %w", runID, r.Status, ErrConflict)
		}
		return s.modifySchedule(ctx, scheduleID, func(sc *Schedule) error {
			sc.BaselineRun = runID
			out = sc
			return nil
		})
	})
	return out, err
}

// HistoryPoint is one run of a schedule: its metrics per variant.
type HistoryPoint struct {
	Run        string                        `json:"run"`
	Time       time.Time                     `json:"time"`
	Status     RunStatus                     `json:"status"`
	Baseline   bool                          `json:"baseline"`
	Regression bool                          `json:"regression"`
	Metrics    map[string]map[string]float64 `json:"metrics"`
}

// ScheduleHistory lists a schedule's runs oldest first: the trend of
// every metric of every variant.
func (s *Service) ScheduleHistory(ctx context.Context, id string) ([]HistoryPoint, error) {
	sc, err := s.GetSchedule(ctx, id)
	if err != nil {
		return nil, err
	}
	runs, err := s.ListRuns(ctx, RunFilter{ScheduleID: id, Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	out := []HistoryPoint{}
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		p := HistoryPoint{Run: r.ID, Time: r.CreatedAt, Status: r.Status, Baseline: r.ID == sc.BaselineRun,
			Regression: r.Verdict != nil && r.Verdict.Regression, Metrics: map[string]map[string]float64{}}
		for _, v := range r.Variants {
			if v.Metrics != nil {
				p.Metrics[v.Name] = v.Metrics
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *Service) getSchedule(id string) (*Schedule, error) {
	var sc Schedule
	err := s.withDB(func(db *controldb.DB) error { return db.Get(scheduleKey(id), &sc) })
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, fmt.Errorf("schedule %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &sc, nil
}

func (s *Service) putSchedule(sc *Schedule) error {
	return s.withDB(func(db *controldb.DB) error { return db.Put(scheduleKey(sc.ID), sc) })
}

// modifySchedule is a read-modify-write of one schedule record.
func (s *Service) modifySchedule(_ context.Context, id string, fn func(sc *Schedule) error) error {
	s.rn.recMu.Lock()
	defer s.rn.recMu.Unlock()
	sc, err := s.getSchedule(id)
	if err != nil {
		return err
	}
	if err := fn(sc); err != nil {
		return err
	}
	return s.putSchedule(sc)
}

func (s *Service) allSchedules() ([]Schedule, error) {
	var out []Schedule
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan([]byte("schedule/"), []byte("schedule0"), func(_, v []byte) (bool, error) {
			var sc Schedule
			if err := decodeJSON(v, &sc); err != nil {
				return false, err
			}
			out = append(out, sc)
			return true, nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

func (rn *runner) poke() {
	select {
	case rn.wake <- struct{}{}:
	default:
	}
}

// startScheduler starts the goroutine that fires due schedules; Close
// stops it.
func (s *Service) startScheduler() {
	rn := s.rn
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.ctx.Err() != nil {
		return
	}
	rn.wg.Add(1)
	go func() {
		defer rn.wg.Done()
		for {
			wait := s.fireDue()
			t := time.NewTimer(wait)
			select {
			case <-rn.ctx.Done():
				t.Stop()
				return
			case <-rn.wake:
				t.Stop()
			case <-t.C:
			}
		}
	}()
}

// fireDue starts the runs of due schedules and returns how long to sleep
// (at most a second, so clock and record changes are noticed).
func (s *Service) fireDue() time.Duration {
	wait := time.Second
	all, err := s.allSchedules()
	if err != nil {
		return wait
	}
	now := s.cfg.Now()
	for _, sc := range all {
		if sc.Paused {
			continue
		}
		sched, err := cronParser.Parse(sc.Cron)
		if err != nil {
			continue
		}
		from := sc.LastFired
		if from.IsZero() {
			from = sc.CreatedAt
		}
		next := sched.Next(from)
		if next.After(now) {
			wait = min(wait, next.Sub(now))
			continue
		}
		s.fire(sc, now)
	}
	return max(wait, 10*time.Millisecond)
}

// fire starts a run of sc unless its previous run is still going.
func (s *Service) fire(sc Schedule, now time.Time) {
	if sc.LastRun != "" {
		s.rn.mu.Lock()
		_, busy := s.rn.active[sc.LastRun]
		s.rn.mu.Unlock()
		if busy {
			_ = s.modifySchedule(context.Background(), sc.ID, func(x *Schedule) error { x.LastFired = now; return nil })
			s.log.Warn("schedule: previous run still going; skipped", slog.String("schedule", sc.ID), slog.String("run", sc.LastRun))
			return
		}
	}
	ctx := WithCaller(context.Background(), Caller{KeyID: sc.CreatedBy, Scopes: sc.Scopes})
	if err := s.keyLive(sc.CreatedBy); err != nil {
		err = fmt.Errorf("schedule %s paused, not run: %w; recreate it with a live key", sc.ID, err)
		s.log.Warn("schedule: creator's key not live", slog.String("schedule", sc.ID), slog.String("err", err.Error()))
		s.record(ctx, "schedule.fire", "schedule/"+sc.ID, "", err)
		_ = s.modifySchedule(ctx, sc.ID, func(x *Schedule) error {
			x.LastFired, x.Paused, x.Error = now, true, err.Error()
			return nil
		})
		return
	}
	run, err := s.startRun(ctx, sc.Spec, sc.ID)
	s.record(ctx, "schedule.fire", "schedule/"+sc.ID, idOf(run), err)
	_ = s.modifySchedule(ctx, sc.ID, func(x *Schedule) error {
		x.LastFired = now
		if run != nil {
			x.LastRun = run.ID
		}
		return nil
	})
}

// afterScheduledRun compares a finished scheduled run with the baseline,
// records the verdict, alerts on a regression and auto-accepts.
func (s *Service) afterScheduledRun(scheduleID, runID string) {
	sc, err := s.getSchedule(scheduleID)
	if err != nil {
		return
	}
	r, err := s.getRun(runID)
	// A run cancelled or interrupted says nothing of the suite; one that
	// failed is a regression, with or without a baseline.
	if err != nil || (r.Status != StatusSucceeded && r.Status != StatusPartial && r.Status != StatusFailed) {
		return
	}
	v := &Verdict{Metric: sc.Metric, Baseline: sc.BaselineRun, Variants: []VariantVerdict{}}
	if r.Status == StatusFailed {
		v.Regression, v.Reason = true, "the run failed: "+r.Error
	}
	if sc.BaselineRun != "" {
		if base, err := s.getRun(sc.BaselineRun); err == nil {
			v.Variants = judgeAgainst(sc, base, r)
		}
	}
	for _, vv := range v.Variants {
		v.Regression = v.Regression || vv.Regression
	}
	ctx := WithCaller(context.Background(), Caller{KeyID: sc.CreatedBy, Scopes: sc.Scopes})
	if v.Regression {
		s.log.Warn("schedule: regression", slog.String("schedule", sc.ID), slog.String("run", runID),
			slog.String("baseline", sc.BaselineRun), slog.String("metric", sc.Metric))
		s.Audit(ctx, AuditEntry{Action: "schedule.regression", Target: "schedule/" + sc.ID, Detail: runID, Result: "ok"})
		if sc.Webhook != "" {
			s.postWebhook(sc.Webhook, v, runID)
		}
	} else if sc.AutoAccept && r.Status == StatusSucceeded {
		v.Accepted = true
		_ = s.modifySchedule(ctx, sc.ID, func(x *Schedule) error { x.BaselineRun = runID; return nil })
	}
	_ = s.updateRun(runID, func(r *Run) { r.Verdict = v })
}

// judgeAgainst compares every succeeded variant of cur with the
// same-named variant of base and judges them as one family (Gate.Judge).
// A variant that cannot be compared is a regression with the reason: one
// that succeeded in base and did not in cur (it failed) or is not in cur,
// and one whose comparison fails. The query sets may differ (the base's
// data moves between runs): the test pairs the queries both evaluated.
func judgeAgainst(sc *Schedule, base, cur *Run) []VariantVerdict {
	var out []VariantVerdict
	var judged []int // indexes in out of the comparable variants
	var names []string
	var ms []evals.MeasureComparison
	inCur := map[string]bool{}
	for i := range cur.Variants {
		cv := &cur.Variants[i]
		inCur[cv.Name] = true
		for j := range base.Variants {
			if base.Variants[j].Name != cv.Name {
				continue
			}
			if cv.Status != StatusSucceeded {
				if base.Variants[j].Status == StatusSucceeded {
					reason := "variant " + string(cv.Status)
					if cv.Error != "" {
						reason += ": " + cv.Error
					}
					out = append(out, VariantVerdict{Variant: cv.Name, Regression: true, Reason: reason})
				}
				continue
			}
			out = append(out, VariantVerdict{Variant: cv.Name})
			c, err := compareVariants(CompareRequest{Metric: sc.Metric, Alpha: sc.Alpha, Regressed: 1, AllowDifferentQueries: true},
				&base.Variants[j], cv, base.Provenance, cur.Provenance)
			if err != nil {
				out[len(out)-1].Regression, out[len(out)-1].Reason = true, "cannot compare: "+err.Error()
				continue
			}
			m, _ := c.Comparison.Measure(sc.Metric)
			judged, names, ms = append(judged, len(out)-1), append(names, cv.Name), append(ms, m)
		}
	}
	for _, bv := range base.Variants {
		if bv.Status == StatusSucceeded && !inCur[bv.Name] {
			out = append(out, VariantVerdict{Variant: bv.Name, Regression: true, Reason: "missing from the run; the baseline has it"})
		}
	}
	g := Gate{Metric: sc.Metric, Alpha: sc.Alpha, Threshold: sc.Threshold, Correction: sc.Correction}
	vs, err := g.Judge(names, ms)
	for k, i := range judged {
		if err != nil {
			out[i].Regression, out[i].Reason = true, "cannot judge: "+err.Error()
			continue
		}
		out[i] = vs[k]
	}
	if out == nil {
		out = []VariantVerdict{}
	}
	return out
}

// postWebhook delivers a verdict under the webhook policy: the URL is
// checked again (it may predate the policy) and every connection, also
// after a redirect, goes only to an allowed address. Failures are logged.
func (s *Service) postWebhook(url string, v *Verdict, runID string) {
	if err := s.hooks.check(url); err != nil {
		s.log.Error("schedule: webhook refused", slog.String("err", err.Error()))
		return
	}
	body, _ := json.Marshal(map[string]any{"run": runID, "verdict": v})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		s.log.Error("schedule: webhook", slog.String("err", err.Error()))
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hookClient.Do(req)
	if err != nil {
		s.log.Error("schedule: webhook", slog.String("err", err.Error()))
		return
	}
	resp.Body.Close()
}
