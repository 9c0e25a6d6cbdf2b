package agentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// runRoutes registers experiment runs and schedules.
func (s *Server) runRoutes() {
	e := s.e
	e.POST("/v1/runs", s.startRun, s.auth("run.start"))
	e.GET("/v1/runs", s.listRuns, s.auth("run.list"))
	e.GET("/v1/runs/compare", s.compareRuns, s.auth("run.compare"))
	e.GET("/v1/runs/:id", s.getRun, s.auth("run.get"))
	e.POST("/v1/runs/:id/cancel", s.cancelRun, s.auth("run.cancel"))
	e.GET("/v1/runs/:id/events", s.runEvents, s.auth("run.events"))
	e.GET("/v1/runs/:id/compare/:other", s.compareRuns, s.auth("run.compare"))
	e.GET("/v1/runs/:id/export", s.exportRun, s.auth("run.export"))
	e.POST(runImportPath, s.importRun, s.auth("run.import"))
	e.POST("/v1/schedules", s.createSchedule, s.auth("schedule.create"))
	e.GET("/v1/schedules", s.listSchedules, s.auth("schedule.list"))
	e.GET("/v1/schedules/:id", s.getSchedule, s.auth("schedule.get"))
	e.PUT("/v1/schedules/:id", s.updateSchedule, s.auth("schedule.update"))
	e.DELETE("/v1/schedules/:id", s.deleteSchedule, s.auth("schedule.delete"))
	e.GET("/v1/schedules/:id/history", s.scheduleHistory, s.auth("schedule.history"))
	e.POST("/v1/schedules/:id/accept", s.acceptRun, s.auth("schedule.accept"))
}

func (s *Server) startRun(c echo.Context) error {
	var spec experiments.ExperimentSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	run, err := s.svc.StartRun(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, run)
}

func (s *Server) listRuns(c echo.Context) error {
	f := experiments.RunFilter{Project: c.QueryParam("project"), Experiment: c.QueryParam("experiment"), ScheduleID: c.QueryParam("schedule")}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return &experiments.FieldError{Field: "limit", Reason: "want an integer"}
		}
		f.Limit = n
	}
	runs, err := s.svc.ListRuns(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []experiments.Run{}
	}
	return c.JSON(http.StatusOK, map[string]any{"runs": runs})
}

// runView is a run with its recall–QPS points.
type runView struct {
	*experiments.Run
	Sweep []experiments.SweepPoint `json:"sweep"`
}

func (s *Server) getRun(c echo.Context) error {
	r, err := s.svc.GetRun(c.Request().Context(), param(c, "id"))
	if err != nil {
		return err
	}
	if c.QueryParam("results") == "false" {
		for i := range r.Variants {
			r.Variants[i].Results = nil
		}
	}
	return c.JSON(http.StatusOK, runView{Run: r, Sweep: experiments.SweepPoints(r)})
}

func (s *Server) cancelRun(c echo.Context) error {
	if err := s.svc.CancelRun(c.Request().Context(), param(c, "id")); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]string{"id": param(c, "id"), "status": "cancelling"})
}

func (s *Server) compareRuns(c echo.Context) error {
	req := experiments.CompareRequest{A: c.QueryParam("a"), B: c.QueryParam("b"), Metric: c.QueryParam("metric")}
	if id := param(c, "id"); id != "" {
		req.A, req.B = id, param(c, "other")
	}
	if v := c.QueryParam("alpha"); v != "" {
		a, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return &experiments.FieldError{Field: "alpha", Reason: "want a number in (0, 1)"}
		}
		req.Alpha = a
	}
	if v := c.QueryParam("allow_different_queries"); v != "" {
		allow, err := strconv.ParseBool(v)
		if err != nil {
			return &experiments.FieldError{Field: "allow_different_queries", Reason: "want true or false"}
		}
		req.AllowDifferentQueries = allow
	}
	cmp, err := s.svc.CompareRuns(c.Request().Context(), req)
	if err != nil {
		return err
	}
	if c.QueryParam("format") == "html" {
		var b bytes.Buffer
		if err := cmp.WriteHTML(&b); err != nil {
			return err
		}
		return c.HTMLBlob(http.StatusOK, b.Bytes())
	}
	return c.JSON(http.StatusOK, cmp)
}

// runImportPath takes a TREC run file as its body, up to
// experiments.MaxRunFileBytes whatever Config.BodyLimit says.
const runImportPath = "/v1/runs/:id/import"

// exportRun streams a variant's rankings: ?variant= names it (optional
// for a run with one succeeded variant), ?format= is trec or jsonl.
func (s *Server) exportRun(c echo.Context) error {
	ref := param(c, "id")
	if v := c.QueryParam("variant"); v != "" {
		ref += ":" + v
	}
	var b bytes.Buffer
	if err := s.svc.ExportRun(c.Request().Context(), ref, c.QueryParam("format"), &b); err != nil {
		return err
	}
	ct := "text/plain; charset=utf-8"
	if c.QueryParam("format") == experiments.ExportJSONL {
		ct = "application/x-ndjson"
	}
	return c.Blob(http.StatusOK, ct, b.Bytes())
}

// importRun adds the TREC run file in the body as variant ?name= of run
// :id; ?source= records where it came from.
func (s *Server) importRun(c echo.Context) error {
	req := experiments.ImportRequest{Run: param(c, "id"), Name: c.QueryParam("name"), Source: c.QueryParam("source")}
	v, err := s.svc.ImportRun(c.Request().Context(), req, c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return err
	}
	v.Results = nil
	return c.JSON(http.StatusCreated, v)
}

func (s *Server) createSchedule(c echo.Context) error {
	var sc experiments.Schedule
	if err := decode(c, &sc); err != nil {
		return err
	}
	out, err := s.svc.CreateSchedule(c.Request().Context(), sc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) listSchedules(c echo.Context) error {
	out, err := s.svc.ListSchedules(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"schedules": out})
}

func (s *Server) getSchedule(c echo.Context) error {
	out, err := s.svc.GetSchedule(c.Request().Context(), param(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) updateSchedule(c echo.Context) error {
	var sc experiments.Schedule
	if err := decode(c, &sc); err != nil {
		return err
	}
	out, err := s.svc.UpdateSchedule(c.Request().Context(), param(c, "id"), sc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deleteSchedule(c echo.Context) error {
	if err := s.svc.DeleteSchedule(c.Request().Context(), param(c, "id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) scheduleHistory(c echo.Context) error {
	h, err := s.svc.ScheduleHistory(c.Request().Context(), param(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"history": h})
}

func (s *Server) acceptRun(c echo.Context) error {
	var req struct {
		RunID string `json:"run_id"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.RunID == "" {
		return &experiments.FieldError{Field: "run_id", Reason: "is required"}
	}
	out, err := s.svc.AcceptRun(c.Request().Context(), param(c, "id"), req.RunID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// runEvents streams a run's progress as server-sent events: an event
// "progress" with the run (without per-query results) whenever its status
// or a variant's status, phase or phase progress (VariantRun.Progress:
// documents loaded, index build counters) changes, and "done" when it
// finishes.
func (s *Server) runEvents(c echo.Context) error {
	ctx := c.Request().Context()
	id := param(c, "id")
	r, err := s.svc.GetRunStatus(ctx, id)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	last := ""
	for {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		key := string(r.Status)
		for _, v := range r.Variants {
			key += "|" + string(v.Status) + "/" + v.Phase
			if p := v.Progress; p != nil {
				key += fmt.Sprintf("/%d/%d", p.Done, p.Total)
			}
		}
		done := r.Status != experiments.StatusQueued && r.Status != experiments.StatusRunning
		if key != last || done {
			ev := "progress"
			if done {
				ev = "done"
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev, b); err != nil {
				return nil
			}
			w.Flush()
			last = key
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
		if r, err = s.svc.GetRunStatus(ctx, id); err != nil {
			return nil
		}
	}
}
